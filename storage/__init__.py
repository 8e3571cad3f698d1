from storage.objects import ObjectMissing, ObjectStore, RemovalRefused, unavailable

__all__ = ["ObjectMissing", "ObjectStore", "RemovalRefused", "unavailable"]
