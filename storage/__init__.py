from storage.objects import ObjectStore

__all__ = ["ObjectStore"]
