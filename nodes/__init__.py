"""ComfyUI nodes of the Matrix-Game 2.0 pack (V3 schema API).

* :mod:`.logic`: what every node does, as plain functions (no ComfyUI import; tested in CI);
* :mod:`.host`: the few ComfyUI services the logic uses, with CPU stand-ins outside ComfyUI;
* :mod:`.nodes_v3`: the ``io.ComfyNode`` classes (imported only when ``comfy_api`` exists).

ComfyUI imports the pack's root ``__init__``, which calls :func:`comfy_entrypoint`.
"""


async def comfy_entrypoint():
    """ComfyUI's V3 entry point: the extension that lists every node of the pack."""
    from .nodes_v3 import MatrixGameExtension
    return MatrixGameExtension()


__all__ = ["comfy_entrypoint"]
