"""Development helpers of microscopy-notebook: fetched files, the storage emulator, its front."""
