from storage.objects import ListedObject, ObjectMissing, ObjectStore, RemovalRefused, unavailable

__all__ = ["ListedObject", "ObjectMissing", "ObjectStore", "RemovalRefused", "unavailable"]
