"""Where models come from: Hugging Face folders, the ``minilm`` short name, torch factories."""
