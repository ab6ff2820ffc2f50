//! fs-verity ioctls (`FS_IOC_ENABLE_VERITY`, `FS_IOC_MEASURE_VERITY`).
