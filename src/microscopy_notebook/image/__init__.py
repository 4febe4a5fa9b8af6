"""The container image of image/: its package list, the build with a local engine, its checks."""
