"""The live interactive node (V3 schema API): play the world from the browser.

The node is one call into :func:`.interactive.run_live_session`; the browser side is
``js/live_preview.js`` (a live view on the node and a floating panel that capture the keyboard and
the pointer-locked mouse). Importing this module inside ComfyUI registers the session routes
(``/matrix_game/session/...``) on ComfyUI's server.
"""
from __future__ import annotations

import secrets

from comfy_api.latest import io

from . import interactive

# the pack's types and category (same strings as nodes_v3; not imported from it, which imports this module)
CATEGORY = "MatrixGame"
MatrixGameModel = io.Custom("MATRIX_GAME_MODEL")
MatrixGameActions = io.Custom("MATRIX_GAME_ACTIONS")
MatrixGameConditioning = io.Custom("MATRIX_GAME_CONDITIONING")


class MatrixGameLiveSession(io.ComfyNode):
    """Play the world live: keys and mouse from the browser in, streamed frames out, block by block."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameLiveSession",
            display_name="Matrix-Game Live Session (interactive)",
            category=CATEGORY,
            search_aliases=["interactive", "play", "live preview", "game", "world model", "keyboard mouse"],
            description="Opens a live world session when run: click the node's live view (or its floating panel) "
                        "and play with the keyboard (W/A/S/D..., I/J/K/L look) and the pointer-locked mouse; every "
                        "decoded frame streams to the view. Stop (or the idle timeout, or max blocks) ends it and the "
                        "node outputs the played frames and the recorded action track (edit it in a timeline node "
                        "and re-render offline). ComfyUI's Cancel ends the session too (and cancels the run).",
            inputs=[
                MatrixGameModel.Input("model", tooltip="From the Matrix-Game model loader (its mode sets the keys)."),
                MatrixGameConditioning.Input("conditioning", tooltip="From Matrix-Game Encode Start Image: the world's "
                                                                     "first frame."),
                io.Vae.Input("vae", tooltip="The model's VAE (Wan 2.1: core Load VAE or the Matrix-Game VAE loader; the "
                                            "embedded ViZDoom model: its entry in the Matrix-Game VAE loader): decodes "
                                            "every block for the live view."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed; the same seed and the same played actions give the same video."),
                io.Int.Input("max_blocks", default=20, min=1, max=1000,
                             tooltip="The session ends after this many blocks (12 video frames each, 9 for the first): "
                                     "20 blocks = 237 frames = 9.5 s at 25 fps (13.5 s at the embedded model's "
                                     "17.5 fps). Frames are kept in memory for the output (about 0.7 MB per 352x640 "
                                     "frame, 21 kB at 64x112)."),
                io.Float.Input("wait_for_input", default=0.0, min=0.0, max=60.0, step=0.1,
                               tooltip="0 = free-running (each block uses the keys held and the mouse moved so far). "
                                       "> 0: each block first waits up to this many seconds for new input, so the "
                                       "world pauses while you do nothing (handy on slow machines)."),
                io.Float.Input("idle_timeout", default=60.0, min=1.0, max=3600.0, step=1.0,
                               tooltip="End the session after this many seconds without any key or mouse input (also "
                                       "the time allowed to start playing)."),
                io.Int.Input("jpeg_quality", default=85, min=30, max=100, advanced=True,
                             tooltip="JPEG quality of the streamed frames (the output IMAGE is not compressed)."),
            ],
            outputs=[io.Image.Output("images", display_name="images",
                                     tooltip="Every frame played [T,H,W,3] (352x640; 64x112 for the embedded model; "
                                             "T = 9 + 12 per further block)."),
                     MatrixGameActions.Output("actions", display_name="actions",
                                              tooltip="The recorded action track (exactly what each block was "
                                                      "generated with): edit it in a timeline and re-render offline.")],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
            not_idempotent=True,
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        # every run is a new session (never reuse a cached result)
        return secrets.token_hex(8)

    @classmethod
    def execute(cls, model, conditioning, vae, seed=0, max_blocks=20, wait_for_input=0.0, idle_timeout=60.0,
                jpeg_quality=85) -> io.NodeOutput:
        node = getattr(cls.hidden, "unique_id", None) if getattr(cls, "hidden", None) is not None else None
        images, track = interactive.run_live_session(model, conditioning, vae, seed, max_blocks, wait_for_input,
                                                     idle_timeout, jpeg_quality, node_id=node)
        return io.NodeOutput(images, track)


NODES = [MatrixGameLiveSession]

interactive.register_comfy_routes()
