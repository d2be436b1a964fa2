"""Plain algorithm code behind FewStep's nodes: torch and ComfyUI's public APIs, no
node classes, so every piece can be tested and benchmarked without a server."""
