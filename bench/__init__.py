"""`make bench`: speed and quality measured side by side against ComfyUI's own nodes."""
