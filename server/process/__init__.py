"""Running a process: the supervisor of --processes, accepting under limits, draining on
stop, logging."""
