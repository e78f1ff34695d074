"""Time and concurrency: the engine (population, schedules and stages, one life per device), the
multi-process workers, the --dry-run plan."""
