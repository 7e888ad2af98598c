"""The embedded worker: executes ``steps`` pipelines inside ``runyard serve``."""
