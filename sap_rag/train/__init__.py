"""Train the toy ColQwen2 (models/sap-rag-toy-colqwen2) from scratch on synthetic report pages.

pages (content) -> render (PIL pages) -> data (batches) -> model (builder) -> loop (training) ->
export (checkpoint, curve) -> verify (held-out subset, model card). Heavy imports happen inside functions.
"""
