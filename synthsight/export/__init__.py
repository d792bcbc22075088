"""What leaves a run folder: exported weights (safetensors for timm, ONNX), the model card, and distillation
into a smaller student. One concept per file:

    distill.py       the `distill` method: soft targets from a teacher ensemble + cosine feature matching
    timm_weights.py  backbone safetensors + a timm config.json; which architectures timm can rebuild
    onnx_model.py    ONNX export, checked with onnxruntime against PyTorch
    model_card.py    the Markdown model card written with every export
    exporter.py      `synthsight export`: one folder with the formats asked for, the card and provenance

Kept free of imports: `synthsight.methods` imports `distill` from here to register it.
"""
