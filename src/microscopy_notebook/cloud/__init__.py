"""The offline Google Cloud Storage: pinned fetches, sample files, the emulator and its front."""
