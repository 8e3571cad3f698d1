from storage.objects import ListedObject, ObjectMissing, ObjectStore

__all__ = ["ListedObject", "ObjectMissing", "ObjectStore"]
