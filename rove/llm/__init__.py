"""LLM-preference intrinsic rewards: Motif (offline) and ONI (online), over Rove's captions.

Modules: ``captions`` (dataset), ``prompts`` + ``parsing`` + ``judge`` (asking the LLM), ``backends``
(OpenAI-compatible HTTP, in-process transformers), ``store`` (SQLite annotations), ``reward_model``
(char-CNN Bradley-Terry / classifier), ``rewards`` (the registered intrinsic modules ``motif``,
``oni_retrieval``, ``oni_classification``, ``oni_ranking``), ``annotator`` (background ONI annotation),
``pipeline`` + ``cli`` (``rove llm ...``), ``presets`` (Motif's reward mix on Rove's PPO), ``smollm2`` (a real
135M LLM that runs on a CPU). Heavy parts load on first use.
"""
