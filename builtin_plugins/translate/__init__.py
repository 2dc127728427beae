"""The translation tools: translate, detect_language and languages over LibreTranslate, Google, DeepL or the chat plugin's LLM."""
