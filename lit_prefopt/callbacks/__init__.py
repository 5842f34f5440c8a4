"""Lightning callbacks that the config groups (conf/callbacks, conf/logger) attach to a run."""
