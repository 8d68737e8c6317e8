"""A minimal stand-in for ComfyUI's ``comfy_api.latest`` (V3 schema API) so that the node classes
import and run in CI, where ComfyUI is absent.

Only what the pack uses is modelled, with the same names and keyword arguments as the real API
(``comfy_api/latest/_io.py`` of ComfyUI 0.33): ``io.Schema``, ``io.ComfyNode``, ``io.NodeOutput``,
``io.Custom``, ``io.Hidden`` and the ``Input``/``Output`` classes of the types below; ``ui.PreviewText``;
``ComfyExtension``. Unknown keyword arguments raise ``TypeError`` (a typo would also break the real
API). The real server is exercised by ``tests/test_comfyui_integration.py``.
"""
from __future__ import annotations

import enum
import sys
import types
from typing import Any, List

_INPUT_KW = {"display_name", "optional", "tooltip", "lazy", "extra_dict", "raw_link", "advanced"}
_WIDGET_KW = _INPUT_KW | {"default", "socketless", "widget_type", "force_input"}
_TYPE_KW = {
    "INT": _WIDGET_KW | {"min", "max", "step", "control_after_generate", "display_mode"},
    "FLOAT": _WIDGET_KW | {"min", "max", "step", "round", "display_mode"},
    "STRING": _WIDGET_KW | {"multiline", "placeholder", "dynamic_prompts"},
    "BOOLEAN": _WIDGET_KW | {"label_on", "label_off"},
    "COMBO": _WIDGET_KW | {"options", "control_after_generate", "upload", "image_folder", "remote"},
}


class StubInput:
    def __init__(self, io_type: str, id: str, **kw):
        allowed = _TYPE_KW.get(io_type, _INPUT_KW)
        bad = set(kw) - allowed
        if bad:
            raise TypeError(f"{io_type}.Input({id!r}) got unexpected keyword arguments {sorted(bad)}")
        self.io_type, self.id, self.kw = io_type, id, kw
        self.optional = bool(kw.get("optional", False))
        self.tooltip = kw.get("tooltip")
        self.advanced = bool(kw.get("advanced", False))

    def __repr__(self):
        return f"Input({self.io_type}, {self.id!r})"


class StubOutput:
    def __init__(self, io_type: str, id: str = None, display_name: str = None, tooltip: str = None,
                 is_output_list: bool = False):
        self.io_type, self.id, self.tooltip = io_type, id, tooltip
        self.display_name = display_name or id


def _comfytype(io_type: str):
    class T:
        pass

    T.io_type = io_type
    T.Input = lambda id, **kw: StubInput(io_type, id, **kw)
    T.Output = lambda id=None, **kw: StubOutput(io_type, id, **kw)
    T.__name__ = io_type
    return T


class Hidden(str, enum.Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"


class Schema:
    _FIELDS = {"node_id", "display_name", "category", "inputs", "outputs", "hidden", "description",
               "search_aliases", "is_input_list", "is_output_node", "is_deprecated", "is_experimental",
               "is_dev_only", "is_api_node", "not_idempotent", "enable_expand", "accept_all_inputs",
               "essentials_category"}

    def __init__(self, node_id: str, **kw):
        bad = set(kw) - self._FIELDS
        if bad:
            raise TypeError(f"Schema got unexpected fields {sorted(bad)}")
        self.node_id = node_id
        self.display_name = kw.get("display_name")
        self.category = kw.get("category", "sd")
        self.inputs: List[StubInput] = list(kw.get("inputs", []))
        self.outputs: List[StubOutput] = list(kw.get("outputs", []))
        self.hidden = list(kw.get("hidden", []))
        self.description = kw.get("description", "")
        self.is_output_node = kw.get("is_output_node", False)


class NodeOutput:
    def __init__(self, *args: Any, ui=None, expand=None, block_execution=None):
        self.args, self.ui = args, ui

    @property
    def result(self):
        return self.args if self.args else None


class _HiddenHolder:
    def __init__(self, unique_id=None):
        self.unique_id = unique_id
        self.prompt = None
        self.extra_pnginfo = None
        self.dynprompt = None


class ComfyNode:
    """Like the real base class: classmethods only; ``cls.hidden`` carries hidden inputs (tests set
    ``Node.hidden = _HiddenHolder(unique_id=...)`` through :func:`set_hidden`)."""

    hidden = _HiddenHolder()

    @classmethod
    def define_schema(cls) -> Schema:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError


def set_hidden(node_cls, unique_id=None) -> None:
    node_cls.hidden = _HiddenHolder(unique_id)


class PreviewText:
    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self):
        return {"text": (self.value,)}


class ComfyExtension:
    async def on_load(self) -> None:
        pass

    async def get_node_list(self):  # pragma: no cover - abstract
        return []


def install() -> bool:
    """Put the stand-in into ``sys.modules`` unless the real ``comfy_api`` imports. Returns True
    when the stand-in is used."""
    try:
        import comfy_api.latest  # noqa: F401
        return False
    except Exception:
        pass
    io = types.ModuleType("comfy_api.latest.io")
    for name, t in {"Int": "INT", "Float": "FLOAT", "String": "STRING", "Boolean": "BOOLEAN", "Combo": "COMBO",
                    "Image": "IMAGE", "Mask": "MASK", "Latent": "LATENT", "Vae": "VAE", "ClipVision": "CLIP_VISION",
                    "ClipVisionOutput": "CLIP_VISION_OUTPUT", "Video": "VIDEO", "Model": "MODEL"}.items():
        setattr(io, name, _comfytype(t))
    io.Custom = _comfytype
    io.Schema, io.ComfyNode, io.NodeOutput, io.Hidden = Schema, ComfyNode, NodeOutput, Hidden
    ui = types.ModuleType("comfy_api.latest.ui")
    ui.PreviewText = PreviewText
    latest = types.ModuleType("comfy_api.latest")
    latest.io, latest.ui, latest.ComfyExtension = io, ui, ComfyExtension
    latest.IS_STUB = True
    pkg = types.ModuleType("comfy_api")
    pkg.latest = latest
    sys.modules.update({"comfy_api": pkg, "comfy_api.latest": latest,
                        "comfy_api.latest.io": io, "comfy_api.latest.ui": ui})
    return True
