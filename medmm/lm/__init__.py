"""The language model: backbones (embedded, Hugging Face, GGUF), their tokenizer and chat frame,
prompts, LoRA/QLoRA adapters and the 4-bit probe."""
