"""Few-step LoRA files: reading them safely and recognising what they are.

Pure: files.py (safetensors header, FewStep metadata), names.py (file-name patterns),
hashes.py (known SHA-256 prefixes, user list, hash cache), structure.py (architecture and
rank from key names and shapes), recognition.py (metadata > hash > name > structure),
settings.py (which preset and steps). Hooks: library.py (ComfyUI's loras folders),
apply.py (core's patches, with the architecture check), load.py (what the node does).
"""
