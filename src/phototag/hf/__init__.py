"""Transformers backends: any Hugging Face hub id or local model folder, for every task.

``loading`` finds and shares models; ``base`` is what every analyzer shares (its identity: ``model_info``,
``fingerprint``, ``input_size``); ``classify`` (zero-shot CLIP/SigLIP or fixed-label classifiers),
``embed`` (CLIP/SigLIP/DINOv2 image embeddings) and the other task modules build analyzers on top of them.
Nothing here imports torch or transformers at import time: analyzers are constructed cheaply and load their
model on first use.
"""
