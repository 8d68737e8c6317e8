"""The ComfyUI nodes (V3 schema API, ``comfy_api.latest``). Each node is a schema plus one call into
:mod:`.logic`; nothing else happens here.

Data flow of a workflow::

    Load Image ─► Encode Start Image ◄─ VAE (core Load VAE / our VAE loader)
                        ▲            ◄─ CLIP_VISION (core Load CLIP Vision / our loader) or CLIP_VISION_OUTPUT
    Model Loader ─► Sampler ◄─ conditioning, actions (JSON / benchmark / file / join), seed, latent frames
                        │ LATENT (raw Wan-2.1 latents: core VAE Decode also works on it)
                   Decode (streaming) ─► IMAGE ─► Action Overlay ─► core Create Video (25 fps) ─► Save Video

The embedded ViZDoom model is 'embedded ViZDoom (CPU)' in all three loaders: its VAE tells Encode
Start Image the model's frame size (112x64) and conditioning frames, its image encoder is 'none'
(zero image tokens); its video is 17.5 fps.
"""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io, ui

from matrix_game_core.config import MODES
from matrix_game_core.pipeline import CROP_MODES

from . import logic

CATEGORY = "MatrixGame"

MatrixGameModel = io.Custom("MATRIX_GAME_MODEL")
MatrixGameActions = io.Custom("MATRIX_GAME_ACTIONS")
MatrixGameConditioning = io.Custom("MATRIX_GAME_CONDITIONING")

_MODE_TIP = ("universal: W/A/S/D + mouse look (Minecraft-like and wild scenes); gta_drive: W/S + steering "
             "(driving); templerun: 7 keys, no mouse (endless runner).")
_TRACK_TIP = "An action track: per video frame, which keys are held and how the mouse moves."
_SUMMARY_TIP = "A readable summary of the track (frames, seconds, keys held, mouse ranges); connect to Preview Any to read it."


def _actions_out(track) -> io.NodeOutput:
    text = logic.summarize(track)
    return io.NodeOutput(track, text, ui=ui.PreviewText(text))


def _track_outputs():
    return [MatrixGameActions.Output("actions", display_name="actions", tooltip=_TRACK_TIP),
            io.String.Output("summary", display_name="summary", tooltip=_SUMMARY_TIP)]


# ================================================================================================ loaders
class MatrixGameModelLoader(io.ComfyNode):
    """Load a Matrix-Game 2.0 DiT (causal, few-step, action-conditioned) from models/matrix_game."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameModelLoader",
            display_name="Matrix-Game Model Loader",
            category=CATEGORY,
            search_aliases=["world model", "Matrix-Game 2.0", "load checkpoint"],
            description="Loads the Matrix-Game 2.0 world model (DiT) for one mode. Files live in "
                        "ComfyUI/models/matrix_game/. 'embedded ViZDoom (CPU)' is a small universal model trained on "
                        "Doom play that ships with the pack (64x112 video, runs on a CPU); pick it in the VAE and image "
                        "encoder loaders too. 'random-tiny' is an UNTRAINED tiny model for tests (its video is noise).",
            inputs=[
                io.Combo.Input("mode", options=list(MODES), default="universal", tooltip=_MODE_TIP),
                io.Combo.Input("checkpoint", options=logic.list_checkpoints(), default=logic.list_checkpoints()[0],
                               tooltip="The DiT file in models/matrix_game/ (official: base_distill for universal, "
                                       "gta_keyboard2dim for gta_drive, templerun_7dim_onlykey for templerun). It must "
                                       "match the mode. 'embedded ViZDoom (CPU)' = the small Doom model shipped with the "
                                       "pack (universal). 'random-tiny' = untrained test model (noise)."),
                io.Combo.Input("dtype", options=list(logic.DTYPES), default="auto",
                               tooltip="Weight and compute precision. auto = bf16 on a GPU (fp16 where bf16 is "
                                       "unsupported), fp32 on the CPU."),
                io.Combo.Input("attention", options=list(logic.ATTENTION), default="auto",
                               tooltip="Attention kernel. auto = flash_attn when installed on a CUDA GPU, else PyTorch "
                                       "SDPA. Both compute exact attention."),
                io.Boolean.Input("download_if_missing", default=False,
                                 tooltip="If the chosen official checkpoint is not in models/matrix_game/, download it "
                                         "(about 6.5 GB) from huggingface.co/Skywork/Matrix-Game-2.0 first."),
            ],
            outputs=[MatrixGameModel.Output("model", display_name="model",
                                            tooltip="The loaded world model (held by ComfyUI's model manager).")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, checkpoint):
        # accept names that are not (yet) in the list, e.g. official files still to be downloaded or a
        # file added after the page was loaded: execute() checks the name and says how to fix it
        return True

    @classmethod
    def execute(cls, mode, checkpoint, dtype="auto", attention="auto", download_if_missing=False) -> io.NodeOutput:
        node = getattr(cls.hidden, "unique_id", None) if getattr(cls, "hidden", None) is not None else None
        model = logic.load_model(mode, checkpoint, dtype, attention, download_if_missing, node_key=node)
        return io.NodeOutput(model)


class MatrixGameVAELoader(io.ComfyNode):
    """Load the official Wan2.1_VAE.pth (or any Wan 2.1 VAE file) as a native VAE."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameVAELoader",
            display_name="Matrix-Game VAE Loader (Wan2.1_VAE.pth)",
            category=CATEGORY,
            description="Loads the official Wan2.1_VAE.pth from models/vae/ or models/matrix_game/ as a normal ComfyUI "
                        "VAE (core's Load VAE with wan_2.1_vae.safetensors works just as well), or the VAE of the "
                        "embedded ViZDoom model: a native VAE that also tells Encode Start Image its model's frame "
                        "size (64x112).",
            inputs=[io.Combo.Input("vae_name", options=logic.list_vae_files(),
                                   tooltip="Wan 2.1 VAE file (Wan2.1_VAE.pth or wan_2.1_vae.safetensors). "
                                           "'embedded ViZDoom (CPU)' = the VAE of the embedded model (use it with that "
                                           "model). 'random-tiny' = the untrained tiny VAE that goes with the random-tiny "
                                           "model.")],
            outputs=[io.Vae.Output("vae", display_name="vae", tooltip="A native ComfyUI VAE (Wan 2.1).")],
        )

    @classmethod
    def execute(cls, vae_name) -> io.NodeOutput:
        return io.NodeOutput(logic.load_vae(vae_name))


class MatrixGameImageEncoderLoader(io.ComfyNode):
    """Load the official open-clip XLM-RoBERTa ViT-H/14 file's image tower as a native CLIP_VISION."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameImageEncoderLoader",
            display_name="Matrix-Game Image Encoder Loader (official CLIP)",
            category=CATEGORY,
            description="Loads the image tower of the official models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth "
                        "(models/clip_vision/ or models/matrix_game/) as a normal ComfyUI CLIP_VISION. Core's Load CLIP "
                        "Vision with clip_vision_h.safetensors is the same model. The embedded ViZDoom model takes no "
                        "image encoder: its entry means 'none' (Encode Start Image then uses zero image tokens).",
            inputs=[io.Combo.Input("clip_name", options=logic.list_clip_files(),
                                   tooltip="The official CLIP .pth (only its visual tower is read) or clip_vision_h. "
                                           "'embedded ViZDoom (CPU)' = none (that model takes no image features; connect "
                                           "it only to Matrix-Game Encode Start Image). 'random-tiny' = the untrained "
                                           "tiny encoder for the random-tiny model.")],
            outputs=[io.ClipVision.Output("clip_vision", display_name="clip_vision",
                                          tooltip="A native ComfyUI CLIP_VISION (ViT-H/14), or 'none' for the embedded "
                                                  "ViZDoom model.")],
        )

    @classmethod
    def execute(cls, clip_name) -> io.NodeOutput:
        return io.NodeOutput(logic.load_clip_vision(clip_name))


# ================================================================================================ encode
class MatrixGameEncodeStartImage(io.ComfyNode):
    """Start image -> conditioning: causal VAE latents of the image + CLIP ViT-H/14 features (none for
    the embedded ViZDoom model)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameEncodeStartImage",
            display_name="Matrix-Game Encode Start Image",
            category=CATEGORY,
            description="Fits the start image to the model's frame size, VAE-encodes it (followed by grey frames, as "
                        "the official pipeline does) and encodes it with the image encoder (224x224 squash, no crop, "
                        "features of the 31st of 32 blocks). The VAE says which model it is for: official Wan 2.1 VAE "
                        "-> 352x640, 'length' latent frames; the embedded ViZDoom VAE -> 64x112, the 3 latent frames "
                        "that model was trained with, zero image tokens.",
            inputs=[
                io.Image.Input("image", tooltip="The first frame of the world. Any size of at least 64x64 (fitted to "
                                                "the model's frame size); the first image of a batch is used."),
                io.Vae.Input("vae", tooltip="The model's VAE; it also sets the frame size. Wan 2.1 (core Load VAE with "
                                            "wan_2.1_vae.safetensors, or the Matrix-Game VAE loader): 352x640. The "
                                            "Matrix-Game VAE loader's 'embedded ViZDoom (CPU)': 64x112."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="CLIP ViT-H/14: core Load CLIP Vision (clip_vision_h.safetensors) or the "
                                            "Matrix-Game image encoder loader. Encoded the official way (no centre crop). "
                                            "For the embedded ViZDoom model: its loader entry ('none') or nothing."),
                io.ClipVisionOutput.Input("clip_vision_output", optional=True,
                                          tooltip="Alternative to clip_vision: the output of core CLIP Vision Encode, used "
                                                  "as is. Set its crop to 'none' to match the official preprocessing "
                                                  "(close, not bit-identical: core resizes with antialiasing)."),
                io.Combo.Input("crop", options=list(CROP_MODES), default="center",
                               tooltip="How the image is fitted to the frame size (352x640, or 64x112 for the embedded "
                                       "model): center = crop to the aspect, then resize (official); stretch = resize, "
                                       "squashing the aspect; pad = letterbox with grey."),
                io.Int.Input("length", default=15, min=1, max=4096, step=1,
                             tooltip="Latent frames to encode; set it to the sampler's latent frames (official). "
                                     "The sampler can run longer: later frames reuse the last encoded one. The "
                                     "embedded ViZDoom model encodes at most 3 (as it was trained)."),
            ],
            outputs=[MatrixGameConditioning.Output("conditioning", display_name="conditioning",
                                                   tooltip="The start image's conditioning for the Matrix-Game sampler.")],
        )

    @classmethod
    def execute(cls, image, vae, clip_vision=None, clip_vision_output=None, crop="center", length=15) -> io.NodeOutput:
        return io.NodeOutput(logic.encode(image, vae, clip_vision, clip_vision_output, crop, length))


# ================================================================================================ actions
class MatrixGameActionsFromJSON(io.ComfyNode):
    """An action track from a JSON string (the action-timeline widget edits this string)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameActionsFromJSON",
            display_name="Matrix-Game Actions (JSON)",
            category=CATEGORY,
            description="An action track written as JSON: the mode and, per video frame, the keys held and the mouse "
                        "movement. The summary on the node shows what the track does.",
            inputs=[io.String.Input("track_json", multiline=True, default=logic.default_track_json(),
                                    tooltip="Action track JSON (format: the engine's ActionTrack.to_json; the "
                                            "timeline editor writes it). Needs 1 + 4(n-1) frames for n latent frames.")],
            outputs=_track_outputs(),
        )

    @classmethod
    def execute(cls, track_json) -> io.NodeOutput:
        return _actions_out(logic.actions_from_json(track_json))


class MatrixGameBenchmarkActions(io.ComfyNode):
    """The official random benchmark action track (Bench_actions_<mode>), seeded."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameBenchmarkActions",
            display_name="Matrix-Game Benchmark Actions",
            category=CATEGORY,
            description="The random action track the official demo uses: one random action (walk, turn, look...) per "
                        "block of 12 video frames.",
            inputs=[
                io.Combo.Input("mode", options=list(MODES), default="universal", tooltip=_MODE_TIP),
                io.Int.Input("latent_frames", default=15, min=3, max=3000, step=3,
                             tooltip="Length in latent frames (a multiple of 3, as the sampler's); the track gets "
                                     "1 + 4(n-1) video frames (15 -> 57 frames, 2.3 s)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the random action choices."),
            ],
            outputs=_track_outputs(),
        )

    @classmethod
    def execute(cls, mode, latent_frames, seed) -> io.NodeOutput:
        from matrix_game_core.config import video_frames_for_latents
        return _actions_out(logic.actions_bench(mode, video_frames_for_latents(int(latent_frames)), seed))


class MatrixGameActionsFromFile(io.ComfyNode):
    """An action track from a .json file in ComfyUI's input folder."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameActionsFromFile",
            display_name="Matrix-Game Load Actions File",
            category=CATEGORY,
            description="Reads an action track .json from ComfyUI/input/ (refresh the page after adding files).",
            inputs=[io.Combo.Input("file", options=logic.list_action_files(),
                                   tooltip="A .json action track in ComfyUI/input/ (or a sub-folder).")],
            outputs=_track_outputs(),
        )

    @classmethod
    def fingerprint_inputs(cls, file):
        return logic.action_file_stamp(file)

    @classmethod
    def execute(cls, file) -> io.NodeOutput:
        return _actions_out(logic.actions_from_file(file))


class MatrixGameConcatActions(io.ComfyNode):
    """Join two action tracks of the same mode, one after the other."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameConcatActions",
            display_name="Matrix-Game Join Actions",
            category=CATEGORY,
            description="Plays the first track, then the second (same mode).",
            inputs=[MatrixGameActions.Input("first", tooltip="The track that plays first."),
                    MatrixGameActions.Input("second", tooltip="The track that plays after it (same mode).")],
            outputs=_track_outputs(),
        )

    @classmethod
    def execute(cls, first, second) -> io.NodeOutput:
        return _actions_out(logic.actions_concat(first, second))


# ================================================================================================ sample
class MatrixGameSampler(io.ComfyNode):
    """Generate the video latents block by block (3 latent frames per block) with KV caches."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameSampler",
            display_name="Matrix-Game Sampler",
            category=CATEGORY,
            search_aliases=["world model", "interactive video", "game video", "keyboard mouse video", "sampler"],
            description="Runs the world model block by block (3 latent frames = 12 video frames each; the first block "
                        "makes 9) following the action track. Progress and a preview frame after every block; Cancel "
                        "stops between denoising steps.",
            inputs=[
                MatrixGameModel.Input("model", tooltip="From the Matrix-Game model loader."),
                MatrixGameConditioning.Input("conditioning", lazy=True,
                                             tooltip="From Matrix-Game Encode Start Image (encoded only after the "
                                                     "track, mode and frame count have been checked)."),
                MatrixGameActions.Input("actions", tooltip="The action track (same mode as the model), at least "
                                                           "1 + 4(n-1) video frames long."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed; the same seed gives the same video on any device."),
                io.Int.Input("latent_frames", default=15, min=3, max=3000, step=3,
                             tooltip="Latent frames to generate, a multiple of 3; the video has 1 + 4(n-1) frames "
                                     "(15 -> 57 frames = 2.3 s at 25 fps; the embedded ViZDoom model: 3.3 s at 17.5 fps)."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Optional: the model's VAE for decoded preview frames while sampling (a small "
                                     "extra decode per block); without it the preview is a rough latent->RGB picture."),
                io.Int.Input("local_attn_size", default=0, min=0, max=64, advanced=True,
                             tooltip="Local attention window in latent frames; 0 = the model's (6; gta_drive 4). "
                                     "Larger remembers more but costs memory and may drift from training."),
                io.Int.Input("sink_size", default=0, min=0, max=63, advanced=True,
                             tooltip="Attention-sink latent frames kept from the start of the video (0 = none, "
                                     "official). Must be smaller than the window."),
                io.String.Input("denoising_steps", default="", advanced=True,
                                tooltip="Override the few-step schedule, e.g. '1000, 750, 500, 250'; empty = the model's "
                                        "(1000, 666, 333; templerun 1000, 750, 500, 250)."),
                io.Combo.Input("compile", options=list(logic.COMPILE), default="auto", advanced=True,
                               tooltip="torch.compile the block step and the decoder (CUDA graphs on CUDA): auto = on "
                                       "for CUDA, off on the CPU. The first blocks of a run compile (a minute or two), "
                                       "then every block replays the compiled graphs."),
                io.Float.Input("action_guidance", default=0.0, min=0.0, max=20.0, step=0.5, advanced=True, optional=True,
                               tooltip="How strongly the picture follows the keys and mouse (classifier-free guidance "
                                       "on the actions): 0 = the model's own (1 = off for the official models and the "
                                       "embedded ViZDoom model, a student with its guidance distilled in). Above 1 "
                                       "every denoising step runs the model twice."),
                io.Float.Input("pitch_guidance", default=0.0, min=0.0, max=20.0, step=0.5, advanced=True, optional=True,
                               tooltip="A separate guidance scale for looking up/down (the mouse pitch), for models "
                                       "that follow the pitch more weakly than turns: 0 = the model's own (unset: "
                                       "the same as action_guidance). When it differs from action_guidance every "
                                       "denoising step runs the model once more. Models without mouse input: leave 0."),
                io.Float.Input("keyboard_guidance", default=0.0, min=0.0, max=20.0, step=0.5, advanced=True,
                               optional=True,
                               tooltip="A separate guidance scale for the keys (W/A/S/D): 0 = the model's own (unset: "
                                       "the same as action_guidance); 1 = keys unguided. When it differs from "
                                       "action_guidance every denoising step runs the model once more."),
                io.Float.Input("guidance_rescale", default=-1.0, min=-1.0, max=1.0, step=0.05, advanced=True,
                               optional=True,
                               tooltip="Guidance rescale: scales the guided prediction back to the spread of the "
                                       "unguided one, so strong guidance keeps the picture's contrast and detail "
                                       "(Lin et al., arXiv 2305.08891). -1 = the model's own (the embedded ViZDoom "
                                       "model's card gives it), 0 = off, up to 1. No extra cost."),
                io.Float.Input("guidance_hold", default=-1.0, min=-1.0, max=1.0, step=0.05, advanced=True,
                               optional=True,
                               tooltip="Guidance hold: guide against this share of the keys and mouse of before each "
                                       "block, held, instead of against no actions, so a change of action (a start, "
                                       "a stop, a new direction) gets the full guidance and a command that goes on "
                                       "less of it (less overshoot). -1 = the model's own, 0 = classic guidance, up "
                                       "to 1 (at 1 a held turn fades in a few blocks). No extra cost."),
            ],
            outputs=[io.Latent.Output("latent", display_name="latent",
                                      tooltip="Raw Wan 2.1 video latents [B,16,n,44,80] (8x14 for the embedded model; "
                                              "core VAE Decode with the same VAE works on them "
                                              "too; Matrix-Game Decode streams them like the official demo).")],
        )

    @classmethod
    def check_lazy_status(cls, model, actions, latent_frames, conditioning=None, local_attn_size=0, sink_size=0,
                          denoising_steps="", **_):
        """Check the track, mode and lengths first; only then ask for the conditioning (so a wrong track
        fails before the start image is encoded)."""
        logic.check_sample_inputs(model, actions, latent_frames, local_attn_size, sink_size, denoising_steps)
        return ["conditioning"] if conditioning is None else []

    @classmethod
    def execute(cls, model, conditioning, actions, seed, latent_frames, vae=None, local_attn_size=0, sink_size=0,
                denoising_steps="", compile="auto", action_guidance=0.0, pitch_guidance=0.0,
                keyboard_guidance=0.0, guidance_rescale=-1.0, guidance_hold=-1.0) -> io.NodeOutput:
        return io.NodeOutput(logic.sample(model, conditioning, actions, seed, latent_frames, vae, local_attn_size,
                                          sink_size, denoising_steps, compile, action_guidance, pitch_guidance,
                                          keyboard_guidance, guidance_rescale, guidance_hold))


# ================================================================================================ decode / overlay
class MatrixGameDecode(io.ComfyNode):
    """Streaming Wan 2.1 VAE decode (one feature cache across the video, as the official demo)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameDecode",
            display_name="Matrix-Game Decode (streaming VAE)",
            category=CATEGORY,
            description="Decodes video latents to frames one latent frame at a time, keeping the VAE's causal cache: "
                        "n latent frames -> 1 + 4(n-1) video frames.",
            inputs=[io.Vae.Input("vae", tooltip="Wan 2.1 VAE (core Load VAE or the Matrix-Game VAE loader)."),
                    io.Latent.Input("latent", tooltip="Video latents from the Matrix-Game sampler.")],
            outputs=[io.Image.Output("images", display_name="images",
                                     tooltip="The video frames as an IMAGE batch [T,352,640,3] (64x112 for the embedded "
                                             "model).")],
        )

    @classmethod
    def execute(cls, vae, latent) -> io.NodeOutput:
        return io.NodeOutput(logic.decode(vae, latent))


class MatrixGameOverlay(io.ComfyNode):
    """Draw the held keys and the mouse movement on the frames (as the official demo videos)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameOverlay",
            display_name="Matrix-Game Action Overlay",
            category=CATEGORY,
            description="Draws the key boxes (lit while held) and the mouse cursor of the action track on each frame.",
            inputs=[io.Image.Input("images", tooltip="Video frames [T,H,W,3], e.g. from Matrix-Game Decode."),
                    MatrixGameActions.Input("actions", tooltip="The action track the video was generated with.")],
            outputs=[io.Image.Output("images", display_name="images", tooltip="The frames with the overlay.")],
        )

    @classmethod
    def execute(cls, images, actions) -> io.NodeOutput:
        return io.NodeOutput(logic.overlay(images, actions))


class MatrixGameActionFollowing(io.ComfyNode):
    """Measure whether the video turns / looks the way the mouse commanded (GameWorld-style)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MatrixGameActionFollowing",
            display_name="Matrix-Game Action Following (evaluate)",
            category=CATEGORY,
            description="For every block whose mouse command turns left/right or looks up/down, checks the sign "
                        "of the global image motion (phase correlation) between consecutive frames; reports "
                        "accuracy per action class. Works on any model's video.",
            inputs=[io.Image.Input("images", tooltip="Video frames [T,H,W,3] generated with the track below."),
                    MatrixGameActions.Input("actions", tooltip="The action track the video was generated with "
                                                               "(universal or gta_drive: it needs mouse actions).")],
            outputs=[io.String.Output("report", display_name="report", tooltip="Per-class accuracy as text."),
                     io.Float.Output("accuracy", display_name="accuracy",
                                     tooltip="Overall accuracy in 0..1 (-1 when no block turned or looked).")],
        )

    @classmethod
    def execute(cls, images, actions) -> io.NodeOutput:
        text, acc = logic.action_following_report(images, actions)
        return io.NodeOutput(text, acc, ui=ui.PreviewText(text))


NODES = [
    MatrixGameModelLoader, MatrixGameVAELoader, MatrixGameImageEncoderLoader, MatrixGameEncodeStartImage,
    MatrixGameActionsFromJSON, MatrixGameBenchmarkActions, MatrixGameActionsFromFile, MatrixGameConcatActions,
    MatrixGameSampler, MatrixGameDecode, MatrixGameOverlay, MatrixGameActionFollowing,
]


class MatrixGameExtension(ComfyExtension):
    async def on_load(self) -> None:
        from . import host
        host.register_model_folder()
        try:
            copied = logic.install_demo_inputs()
            if copied:
                host.log.info("MatrixGame: copied demo inputs into ComfyUI/input: %s", ", ".join(copied))
        except Exception as e:  # never block loading the pack over demo files
            host.log.warning("MatrixGame: could not copy demo inputs: %s", e)

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


from .nodes_interactive import NODES as _LIVE_NODES  # noqa: E402  (live session node + its routes)

NODES += _LIVE_NODES
