"""Developer tools: runtime setup, the tiny-model factory, a real-server harness, demo."""
