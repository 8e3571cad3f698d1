from storage.objects import ObjectMissing, ObjectStore

__all__ = ["ObjectMissing", "ObjectStore"]
