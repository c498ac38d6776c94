"""Gooni's GPU workspace on Modal: serves Workspace API v1 (CONTRACT.md sections 8 and 15).

    modal run modal/modal_app.py::download    # once: seed the weights Volume
    modal deploy modal/modal_app.py           # the app; Modal prints the web URL

The deploy output names the web function's real URL ("Created web function web
=> https://...modal.run"); Gooni reads it from there (internal/dispatch
DeployURL) and stores it as the account's base_url, because the host Modal
picks depends on the workspace, the environment and label truncation.

The file has two halves. The top half is plain Python (stdlib only): request
validation, image header and EXIF parsing, prompt conventions, capacity slots,
model listing, state transitions and the mapping of Gooni params to diffusers
keyword arguments. test_modal_app.py checks it with no Modal, FastAPI, torch
or GPU present. The bottom half, built only when the Modal client imports,
wires that logic to Modal: one always-warm CPU web function (FastAPI) that owns
the HTTP API, one GPU class per set of weights (anisora's i2v and t2v modes
have one each) that loads them once per container, and the one-off
`download` function.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import random
import re
import struct
import threading
import time

try:  # Only the deploy machine and the containers have Modal; the unit tests do not.
    import modal

    if not hasattr(modal, "App"):  # this repository's own modal/ directory, not the Modal client
        modal = None
except ImportError:  # pragma: no cover - exercised by the tests' environment
    modal = None

# ---------------------------------------------------------------------------
# Names and limits shared by both halves.
# ---------------------------------------------------------------------------

APP_NAME = "gooni-inference"
WEB_LABEL = "gooni-inference"  # the host is https://{source}--gooni-inference.modal.run unless Modal truncates it
WEB_FUNCTION = "web"  # the tag `modal deploy` prints: "Created web function web => https://..."
TASKS_DICT = "gooni-tasks"
SLOTS_DICT = "gooni-slots"
MEDIA_VOLUME = "gooni-media"
MODELS_VOLUME = "gooni-models"
# Attached to `download` when it exists; holds HF_TOKEN for the gated FLUX.1-dev.
HF_SECRET_DEFAULT = "gooni-hf"

MEDIA_DIR = "/media"
MODELS_DIR = "/models"
HF_HOME = MODELS_DIR + "/hf"
CONVERTED_DIR = MODELS_DIR + "/gooni"  # weights converted once by `download`
READY_KEY = "ready:models"  # in TASKS_DICT: {model id: weights fingerprint}, written by `download`

# Concurrent tasks this workspace admits (all models together). Each GPU class
# also scales to at most this many containers, so it bounds spend. Gooni's
# account `capacity` should not exceed it.
CAPACITY = 4
VIDEO_TIMEOUT = 30 * 60  # per task, matches GG_TTL_VIDEO: Gooni gives up on the task then anyway
IMAGE_TIMEOUT = 10 * 60  # matches GG_TTL_IMAGE
VIDEO_STARTUP = 20 * 60  # container start plus @modal.enter weight load, counted apart from a task's time
IMAGE_STARTUP = 10 * 60
SCALEDOWN = 5 * 60  # a warm GPU container keeps its weights for the next task this long
RETENTION_SECONDS = 48 * 3600  # finished tasks and their media are swept after this
MAX_BODY = 16 << 20  # the simulator's bound; a 10 MiB input image is ~13.4 MiB in base64
MAX_PROMPT = 4000
MAX_ERROR = 1024  # the Go client keeps at most this much of an error text
MAX_IMAGE_SIDE = 8192  # an i2v input larger than this is refused before anything decodes it
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 16
SEED_MAX = 2**31 - 1

# fullmatch, not match: "$" would let a trailing newline through.
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

STATUS_PENDING = "pending"
STATUS_PROCESSING = "processing"
STATUS_DONE = "done"
STATUS_FAILED = "failed"
ACTIVE = (STATUS_PENDING, STATUS_PROCESSING)
TERMINAL = (STATUS_DONE, STATUS_FAILED)


def _p(kind, lo, hi, default, step=None):
    """A catalog parameter bound: kind int/float, [lo, hi], default, optional grid step from lo."""
    return {"kind": kind, "min": lo, "max": hi, "default": default, "step": step}


_SEED = _p("int", -1, SEED_MAX, -1)

# What this app serves, per catalog model id. The params are exactly the bounds
# inference_settings.json declares for these models (modal/catalog_entries.json
# holds a copy of those entries; the tests keep the app, the copy and the
# catalog equal), so nothing the catalog allows is refused here and nothing
# else is allowed.
#
# anisora: two modes, as the catalog's label says ("t2v runs the Wan 2.1 T2V base").
#   i2v: AniSora V3.1 (bilibili Index-AniSora), a fine-tune of Wan2.1-I2V-14B.
#     Its inference script (anisoraV3/generate-pi-i2v-any.py in
#     github.com/bilibili/Index-anisora) uses 40 steps, guide scale 5, shift 5,
#     81 frames at 16 fps and 480P sizes; its README asks for 8k+1 frames, while
#     Wan's VAE (time x4) and diffusers' Wan pipelines take any 4k+1, which is
#     the grid the catalog declares for the model.
#   t2v: AniSora has no text-to-video weights, so t2v runs the plain Wan 2.1
#     T2V 14B base (Wan-AI/Wan2.1-T2V-14B-Diffusers), as the ComfyUI driver's
#     anisora-t2v workflow does. Wan's generate.py defaults for t2v-14B: guide
#     scale 5, shift 5, 81 frames, 16 fps (50 steps; the catalog defaults to 40).
#   Sizes step 16 for both: Wan's VAE downsamples by 8 and the transformer
#   patches by 2 (diffusers' WanPipeline.check_inputs refuses anything else).
# pony: Pony Diffusion V6 XL, an SDXL checkpoint (authors: Euler a, 25 steps, cfg 7).
# flux: FLUX.1 [dev] (guidance-distilled, 28 steps, guidance 3.5, no negative prompt).
#   Gated on Hugging Face: listed in /health only with a token.
#
# phr00t is deliberately absent: Phr00t's "WAN2.2 Rapid AllInOne" is a ComfyUI
# checkpoint (Wan 2.2 14B with accelerator LoRAs, VAE and text encoder merged
# in) that diffusers cannot load; anything this app ran under that name would be
# another model. Operators serve it with the ComfyUI driver (CONTRACT.md 14),
# whose shipped workflow loads the real checkpoint; routing sends phr00t tasks
# only to accounts whose /health lists it, so this app never sees them.
MODELS = {
    "anisora": {
        "type": "video", "modes": ("i2v", "t2v"), "gated": False,
        "label": "AniSora (t2v runs the Wan 2.1 T2V base)",
        "params": {
            "width": _p("int", 256, 832, 832, 16),
            "height": _p("int", 256, 832, 480, 16),
            "num_frames": _p("int", 17, 81, 81, 4),  # 4k+1: Wan's VAE compresses time by 4
            "fps": _p("int", 16, 16, 16),
            "steps": _p("int", 1, 50, 40),
            "guidance": _p("float", 1, 10, 5),
            "seed": _SEED,
        },
    },
    "pony": {
        "type": "image", "modes": ("t2i",), "gated": False,
        "label": "Pony Diffusion V6 XL",
        "params": {
            "width": _p("int", 512, 1536, 1024, 8),
            "height": _p("int", 512, 1536, 1024, 8),
            "steps": _p("int", 1, 60, 25),
            "guidance": _p("float", 1, 12, 7),
            "seed": _SEED,
        },
    },
    "flux": {
        "type": "image", "modes": ("t2i",), "gated": True, "negative_prompt": False,
        "label": "FLUX.1 [dev] (non-commercial licence)",
        "params": {
            "width": _p("int", 256, 2048, 1024, 16),
            "height": _p("int", 256, 2048, 1024, 16),
            "steps": _p("int", 1, 50, 28),
            "guidance": _p("float", 1, 10, 3.5),
            "seed": _SEED,
        },
    },
}
MODEL_IDS = tuple(MODELS)

# What runs each (model, mode): a key naming its weights (WEIGHTS), its GPU
# class and resources (RESOURCES), and its entry in the READY_KEY record that
# `download` writes. One key per set of weights, so anisora's two modes run in
# two GPU classes: a container holds one 14B transformer, never both.
RUNNERS = {
    ("anisora", "i2v"): "anisora",  # AniSora V3.1's own weights
    ("anisora", "t2v"): "wan21-t2v",  # the Wan 2.1 T2V 14B base
    ("pony", "t2i"): "pony",
    ("flux", "t2i"): "flux",
}
RUNNER_KEYS = tuple(dict.fromkeys(RUNNERS.values()))


def runner_for(model: str, mode: str) -> str:
    """The runner key serving a checked submission's model and mode; KeyError for any other pair."""
    return RUNNERS[(model, mode)]


def runners_of(model: str) -> list:
    """The runner keys a model needs for all of its catalog modes, in mode order, without repeats."""
    return list(dict.fromkeys(RUNNERS[(model, mode)] for mode in MODELS[model]["modes"]))


def runner_model(key: str) -> str:
    """The catalog model id a runner key serves."""
    return next(model for (model, _mode), k in RUNNERS.items() if k == key)


# GPU, RAM (MiB) and CPU per runner. Weights in bf16/fp16:
#   anisora (i2v): 14B transformer ~28 GB + umT5-XXL ~11 GB + CLIP ViT-H + VAE,
#     plus activations at 832x480x81 (32760 tokens): an 80 GB H100.
#   wan21-t2v (anisora t2v): the same 14B transformer size and token count
#     without the CLIP image encoder: also an 80 GB H100. Its repository stores
#     the transformer and umT5 in fp32 (~80 GB in all); they are cast to bf16
#     while loading, shard by shard, so RAM holds the bf16 copy (~40 GB).
#   flux: 12B transformer ~24 GB + T5-XXL ~9.5 GB + CLIP-L + VAE: a 48 GB L40S.
#   pony: SDXL ~7 GB: a 24 GB L4, or an A10G when no L4 is free.
# RAM covers loading (safetensors are memory-mapped, then copied to the GPU).
RESOURCES = {
    "anisora": {"gpu": "H100", "memory": 64 * 1024, "cpu": 4.0},
    "wan21-t2v": {"gpu": "H100", "memory": 64 * 1024, "cpu": 4.0},
    "flux": {"gpu": "L40S", "memory": 48 * 1024, "cpu": 4.0},
    "pony": {"gpu": ["L4", "A10G"], "memory": 16 * 1024, "cpu": 2.0},
}

# Where each runner's weights come from: Hugging Face repository, the commit it
# is pinned to, and the files taken. `download` fetches exactly these into the
# weights Volume; inference only ever reads that Volume (HF_HUB_OFFLINE=1).
# Revisions found pinned in public code; check them with
#   hf download REPO --revision REV --dry-run
# before changing anything here. A change makes /health drop the model until
# `download` has run again (the fingerprint below no longer matches).
WEIGHTS = {
    "anisora": [
        # The authors' own weights, Wan's original layout (one directory per
        # release: V3.1 is the Wan 2.1 I2V 14B fine-tune; V3.2 is Wan 2.2 A14B).
        {"repo": "IndexTeam/Index-anisora", "revision": "b134a8e677e4b22269827af7d596a4f2d9d3430a",
         "allow": ["V3.1/config.json", "V3.1/diffusion_pytorch_model*"]},
        # The pipeline around it: umT5 text encoder, CLIP image encoder, VAE,
        # scheduler and the transformer's config, not its weights.
        {"repo": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "revision": "b184e23a8a16b20f108f727c902e769e873ffc73",
         "allow": ["model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "image_encoder/*",
                   "image_processor/*", "vae/*", "transformer/config.json"]},
    ],
    "pony": [
        # An unaffiliated Hugging Face mirror of the CivitAI release (CivitAI needs
        # an API token). Its revision is "main", so the file is pinned by content:
        # `download` refuses a file whose SHA-256 differs.
        {"repo": "LyliaEngine/Pony_Diffusion_V6_XL", "revision": "main",
         "allow": ["ponyDiffusionV6XL_v6StartWithThisOne.safetensors"],
         "sha256": {"ponyDiffusionV6XL_v6StartWithThisOne.safetensors":
                    "67ab2fd8ec439a89b3fedb15cc65f54336af163c7eb5e4f2acc98f090a29b0b3"}},
        # SDXL's component configs, which from_single_file needs to build the pipeline offline.
        {"repo": "stabilityai/stable-diffusion-xl-base-1.0", "revision": "462165984030d82259a11f4367a4eed129e94a7b",
         "allow": ["model_index.json", "*/config.json", "scheduler/scheduler_config.json",
                   "tokenizer/*", "tokenizer_2/*"]},
    ],
    "wan21-t2v": [
        # The whole diffusers pipeline (model_index.json names WanPipeline's
        # tokenizer, text_encoder, transformer, vae and scheduler). The revision
        # is the one public Wan 2.1 T2V benchmarks and download scripts pin
        # (e.g. "Wan-AI/Wan2.1-T2V-14B-Diffusers --revision 38ec498c..."; one
        # such script records 12 fp32 transformer shards, 57.2 GB, at it).
        {"repo": "Wan-AI/Wan2.1-T2V-14B-Diffusers", "revision": "38ec498cb3208fb688890f8cc7e94ede2cbd7f68",
         "allow": ["model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "transformer/*", "vae/*"]},
    ],
    "flux": [
        {"repo": "black-forest-labs/FLUX.1-dev", "revision": "3de623fc3c33e44ffbe2bad470d0f45bccf2eb21",
         "allow": ["model_index.json", "scheduler/*", "text_encoder/*", "text_encoder_2/*",
                   "tokenizer/*", "tokenizer_2/*", "transformer/*", "vae/*"], "gated": True},
    ],
}
PONY_FILE = "ponyDiffusionV6XL_v6StartWithThisOne.safetensors"
# Bumped when `download`'s conversion of a runner's weights changes, so old conversions stop counting as ready.
CONVERSION_VERSION = {"anisora": 1, "wan21-t2v": 1, "pony": 1, "flux": 1}

# Prompt conventions the models were trained with, applied here so that Gooni's
# users write plain prompts (documented in modal/README.md).
# Pony V6 XL's authors: start every prompt with the score tags.
PONY_PREFIX = "score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up, "
# AniSora V3's README: "[description] aesthetic score: X.X. motion score: X.X.
# There is no text in the video." (V3.1: motion 2.0-4.0 recommended).
ANISORA_SUFFIX = " aesthetic score: 5.5. motion score: 3.0. There is no text in the video."
# Wan's default negative prompt (wan/configs/shared_config.py, used by AniSora's
# scripts) when the user gives none.
WAN_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
                "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
                "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
ANISORA_SHIFT = 5.0  # AniSora's sample_shift default for i2v
# Wan 2.1's generate.py: sample_shift 5.0 for t2v at every size (only i2v at
# 480P uses 3.0). The diffusers repository's scheduler config says 3.0, so it is set.
WAN_T2V_SHIFT = 5.0

# Progress bands: loading weights, denoising, encoding. 100 is only ever "done".
PROGRESS_STARTED = 2
PROGRESS_LOADED = 10
PROGRESS_DENOISED = 90
PROGRESS_ENCODED = 95


class ApiError(Exception):
    """An answer other than success: HTTP status plus the simulator's error shape."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": self.code, "message": self.message}


class TaskGone(Exception):
    """The task was deleted while running: the GPU job stops instead of resurrecting it."""


# ---------------------------------------------------------------------------
# Pure logic (stdlib only).
# ---------------------------------------------------------------------------


def check_task_id(task_id) -> str:
    if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
        raise ApiError(400, "invalid_task_id", "task id must match ^[A-Za-z0-9_-]{1,64}$")
    return task_id


def _is_number(v) -> bool:
    # bool is an int in Python but never a valid numeric param on the wire.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def normalize_params(model: str, params) -> dict:
    """Known params checked against the model's bounds and grid, defaults filled, unknown names ignored.

    seed -1 means "pick one"; Gooni now always sends a resolved 0..2147483647.
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ApiError(400, "invalid_params", "params must be an object")
    spec = MODELS[model]["params"]
    out = {name: p["default"] for name, p in spec.items()}
    for name, p in spec.items():
        if name not in params or params[name] is None:
            continue
        v = params[name]
        if not _is_number(v) or v != v:  # v != v: NaN
            raise ApiError(400, "invalid_params", f"params.{name} must be a number")
        # Bounds before conversion: float() of a huge JSON integer would overflow.
        if v < p["min"] or v > p["max"]:
            raise ApiError(400, "invalid_params", f"params.{name} must be within {p['min']}..{p['max']} for {model}")
        if p["kind"] == "int":
            if v != int(v):
                raise ApiError(400, "invalid_params", f"params.{name} must be an integer")
            v = int(v)
            if p["step"] and (v - p["min"]) % p["step"]:
                raise ApiError(400, "invalid_params",
                               f"params.{name} must be {p['min']} plus a multiple of {p['step']} for {model}")
        else:
            v = float(v)
        out[name] = v
    return out


def decode_base64(value) -> bytes:
    """The i2v input: base64 (standard or URL-safe) or a data URL."""
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid_image", "image must be a base64 string")
    if value.startswith("data:"):
        _, _, value = value.partition(",")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_image", "image is not valid base64") from None


def tiff_orientation(tiff: bytes) -> int:
    """EXIF Orientation (tag 0x0112) from a TIFF structure, 1 when absent or malformed.

    Layout per the TIFF 6.0 / Exif 2.3 specifications: a byte-order mark ("II"
    little, "MM" big), the magic 42, the offset of IFD0, then 12-byte entries.
    """
    if len(tiff) < 8:
        return 1
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or struct.unpack(order + "H", tiff[2:4])[0] != 42:
        return 1
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return 1
    count = struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]
    for i in range(min(count, 512)):  # bounded: a hostile count cannot make us loop long
        at = ifd + 2 + 12 * i
        if at + 12 > len(tiff):
            return 1
        tag, typ, n = struct.unpack(order + "HHI", tiff[at:at + 8])
        if tag == 0x0112:
            if typ != 3 or n != 1:  # SHORT, one value, stored in the entry itself
                return 1
            value = struct.unpack(order + "H", tiff[at + 8:at + 10])[0]
            return value if 1 <= value <= 8 else 1
    return 1


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_info(data: bytes):
    """(width, height, orientation) from JPEG segments, stopping at the scan."""
    at, size, orientation = 2, None, 1
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if length < 2 or at + 2 + length > len(data):
            raise ValueError("JPEG segment runs past the end")
        seg = data[at + 4:at + 2 + length]
        if marker == 0xE1 and seg[:6] == b"Exif\x00\x00" and orientation == 1:
            orientation = tiff_orientation(seg[6:])
        elif marker in _JPEG_SOF:
            if len(seg) < 5:
                raise ValueError("short JPEG frame header")
            h, w = struct.unpack(">HH", seg[1:5])
            size = (w, h)
        elif marker in (0xDA, 0xD9):  # start of scan, end of image
            break
        at += 2 + length
    if size is None:
        raise ValueError("no JPEG frame header")
    return size[0], size[1], orientation


def _png_info(data: bytes):
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ValueError("PNG without IHDR")
    w, h = struct.unpack(">II", data[16:24])
    orientation, at = 1, 8
    for _ in range(4096):  # chunks before the image data; bounded
        if at + 8 > len(data):
            break
        n, typ = struct.unpack(">I4s", data[at:at + 8])
        if typ == b"IDAT" or typ == b"IEND" or at + 12 + n > len(data):
            break
        if typ == b"eXIf":
            orientation = tiff_orientation(data[at + 8:at + 8 + n])
            break
        at += 12 + n
    return w, h, orientation


def _webp_info(data: bytes):
    size, orientation, at = None, 1, 12
    while at + 8 <= len(data):
        typ, n = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
        body = data[at + 8:at + 8 + n]
        if typ == b"VP8X" and len(body) >= 10:
            w = int.from_bytes(body[4:7], "little") + 1
            h = int.from_bytes(body[7:10], "little") + 1
            size = (w, h)
        elif typ == b"VP8 " and len(body) >= 10 and size is None:
            if body[3:6] != b"\x9d\x01\x2a":
                raise ValueError("VP8 start code missing")
            w, h = struct.unpack("<HH", body[6:10])
            size = (w & 0x3FFF, h & 0x3FFF)
        elif typ == b"VP8L" and len(body) >= 5 and size is None:
            if body[0] != 0x2F:
                raise ValueError("VP8L signature missing")
            bits = int.from_bytes(body[1:5], "little")
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif typ == b"EXIF":
            tiff = body[6:] if body[:6] == b"Exif\x00\x00" else body
            orientation = tiff_orientation(tiff)
        at += 8 + n + (n & 1)  # chunks are padded to even sizes
    if size is None:
        raise ValueError("no WebP frame header")
    return size[0], size[1], orientation


def image_info(data: bytes) -> dict:
    """Format, stored size and EXIF orientation of a PNG, JPEG or WebP, read from headers only.

    Refuses (ApiError invalid_image) what is not one of those, is malformed, or
    whose size is out of bounds, before anything decodes pixels: a small file
    can declare a huge image.
    """
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            fmt, (w, h, o) = "png", _png_info(data)
        elif data.startswith(b"\xff\xd8\xff"):
            fmt, (w, h, o) = "jpeg", _jpeg_info(data)
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            fmt, (w, h, o) = "webp", _webp_info(data)
        else:
            raise ApiError(400, "invalid_image", "image must be PNG, JPEG or WebP")
    except (ValueError, struct.error):
        raise ApiError(400, "invalid_image", "image header is malformed") from None
    if not (MIN_IMAGE_SIDE <= w <= MAX_IMAGE_SIDE and MIN_IMAGE_SIDE <= h <= MAX_IMAGE_SIDE) or w * h > MAX_IMAGE_PIXELS:
        raise ApiError(400, "invalid_image",
                       f"image is {w}x{h}: each side must be {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE} px, "
                       f"at most {MAX_IMAGE_PIXELS} px in all")
    return {"format": fmt, "width": w, "height": h, "orientation": o}


# What brings an image stored with EXIF orientation n upright, as Pillow's
# Image.Transpose operations (the same table Pillow's ImageOps.exif_transpose uses).
ORIENTATION_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


def upright_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """The size as seen upright: orientations 5-8 swap the sides."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def cover_crop(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int, int, int]:
    """The centred box (left, top, right, bottom) of a width x height image with the target's aspect.

    Cropping before resizing keeps proportions (a plain resize would stretch a
    portrait photo into a 832x480 frame).
    """
    if width * target_h > height * target_w:  # wider than the target: trim the sides
        w = max(1, round(height * target_w / target_h))
        left = (width - w) // 2
        return left, 0, left + w, height
    h = max(1, round(width * target_h / target_w))
    top = (height - h) // 2
    return 0, top, width, top + h


def parse_submission(raw: bytes) -> dict:
    """The body of POST /tasks, checked and normalized; ApiError says what is wrong."""
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", "body over 16 MiB")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "body must be a JSON task object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON task object")
    task_id = check_task_id(body.get("task_id"))
    typ = body.get("type")
    if typ not in ("image", "video"):
        raise ApiError(400, "invalid_type", "type must be image or video")
    model = body.get("model")
    if not isinstance(model, str) or model not in MODELS:
        raise ApiError(400, "invalid_model", "this workspace serves " + ", ".join(MODEL_IDS))
    spec = MODELS[model]
    if spec["type"] != typ:
        raise ApiError(400, "invalid_type", f"model {model} makes {spec['type']}, not {typ}")
    mode = body.get("mode") or spec["modes"][0]
    if mode not in spec["modes"]:
        raise ApiError(400, "invalid_mode", f"model {model} takes modes " + ", ".join(spec["modes"]))
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
        raise ApiError(400, "invalid_prompt", f"prompt must be a non-empty string of at most {MAX_PROMPT} characters")
    negative = body.get("negative_prompt") or ""
    if not isinstance(negative, str) or len(negative) > MAX_PROMPT:
        raise ApiError(400, "invalid_prompt", f"negative_prompt must be a string of at most {MAX_PROMPT} characters")
    if negative.strip() and spec.get("negative_prompt") is False:
        raise ApiError(400, "invalid_prompt", f"model {model} takes no negative_prompt")
    params = normalize_params(model, body.get("params"))
    image = info = None
    if mode == "i2v":
        image = decode_base64(body.get("image"))
        info = image_info(image)
    return {
        "task_id": task_id, "type": typ, "model": model, "mode": mode,
        "prompt": prompt, "negative_prompt": negative, "params": params,
        "image": image, "image_info": info,
    }


def weights_fingerprint(key: str) -> str:
    """A digest (16 hex digits) of what `download` fetched and converted for a runner key; /health compares it."""
    doc = json.dumps({"weights": WEIGHTS[key], "conversion": CONVERSION_VERSION[key]}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def served_models(ready, has_hf_token: bool) -> list:
    """The model ids /health lists: weights downloaded at the pinned revisions, and a token for gated ones.

    `ready` is the READY_KEY record `download` writes ({runner key: fingerprint});
    a runner whose pins changed since then is not ready until `download` runs
    again. Gooni routes by model (CONTRACT.md 14), so a model is listed only when
    the runners of all its modes are ready: anisora needs both i2v and t2v.
    """
    if not isinstance(ready, dict):
        return []
    out = []
    for model in MODEL_IDS:
        if any(ready.get(key) != weights_fingerprint(key) for key in runners_of(model)):
            continue
        if MODELS[model]["gated"] and not has_hf_token:
            continue
        out.append(model)
    return out


def download_plan(requested: str, has_hf_token: bool) -> tuple[list, list]:
    """(models to download, [(model, reason)] skipped) for `download --models a,b` ("" = all).

    Unknown names raise ValueError; gated models are skipped without a token
    (FLUX.1-dev cannot be fetched without one, and schnell is gated too).
    """
    names = [n.strip() for n in (requested or "").split(",") if n.strip()] or list(MODEL_IDS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError("unknown model(s) " + ", ".join(unknown) + "; this app serves " + ", ".join(MODEL_IDS))
    todo, skipped = [], []
    for n in dict.fromkeys(names):
        if MODELS[n]["gated"] and not has_hf_token:
            skipped.append((n, "gated on Hugging Face: create the Modal secret gooni-hf with HF_TOKEN "
                               "after accepting the licence on the model page"))
        else:
            todo.append(n)
    return todo, skipped


def first_answer(task_id: str) -> dict:
    """What POST /tasks answers, the first time and every time after for that id."""
    return {"task_id": task_id, "status": STATUS_PENDING}


def new_record(sub: dict, now: float, slot: int | None = None) -> dict:
    """The task's state as first stored: no input image (the GPU job gets it directly)."""
    return {
        "task_id": sub["task_id"], "type": sub["type"], "model": sub["model"], "mode": sub["mode"],
        "status": STATUS_PENDING, "progress": 0, "error": None,
        "created_at": now, "started_at": None, "finished_at": None,
        "result": None, "preview": None, "slot": slot, "seed": None,
    }


_ALLOWED = {
    STATUS_PENDING: (STATUS_PENDING, STATUS_PROCESSING, STATUS_FAILED),
    STATUS_PROCESSING: (STATUS_PROCESSING, STATUS_DONE, STATUS_FAILED),
    STATUS_DONE: (),
    STATUS_FAILED: (),
}


def transition(record: dict, status: str, now: float, progress: int | None = None,
               error: str | None = None, **fields) -> dict | None:
    """The next record, or None when the move is not allowed (a finished task stays finished).

    Progress never goes down and reaches 100 only with done, as the contract requires.
    """
    if status not in _ALLOWED.get(record.get("status"), ()):
        return None
    nxt = dict(record)
    nxt.update(fields)
    nxt["status"] = status
    cur = int(record.get("progress") or 0)
    if status == STATUS_DONE:
        nxt["progress"] = 100
    else:
        want = cur if progress is None else int(progress)
        nxt["progress"] = max(cur, min(99, max(0, want)))
    if status == STATUS_PROCESSING and not record.get("started_at"):
        nxt["started_at"] = now
    if status in TERMINAL:
        nxt["finished_at"] = now
    if status == STATUS_FAILED:
        nxt["error"] = clean_error(error or "generation failed")
    return nxt


def step_progress(step: int, total: int) -> int:
    """Progress after denoising step `step` (0-based) of `total`, within the denoise band."""
    if total <= 0:
        return PROGRESS_LOADED
    done = min(max(step + 1, 0), total)
    return PROGRESS_LOADED + (PROGRESS_DENOISED - PROGRESS_LOADED) * done // total


def status_view(record: dict) -> dict:
    """GET /tasks/{id}: task_id, status, progress, and error only when failed."""
    view = {"task_id": record["task_id"], "status": record["status"], "progress": int(record.get("progress") or 0)}
    if record["status"] == STATUS_FAILED:
        view["error"] = record.get("error") or "generation failed"
    return view


def is_active(record) -> bool:
    return isinstance(record, dict) and record.get("status") in ACTIVE


def media_entry(record: dict, which: str) -> dict:
    """The stored file behind /result or /preview, or the ApiError the route answers."""
    if record["status"] != STATUS_DONE:
        raise ApiError(409, "not_ready", f"task is {record['status']}, media exists only when done")
    entry = record.get(which)
    if not entry:
        raise ApiError(404, "no_" + which, f"task has no {which}")
    return entry


def media_files(task_id: str, typ: str) -> dict:
    """Volume-relative paths and types of a task's result and preview."""
    if typ == "video":
        return {"result": (f"{task_id}/result.mp4", "video/mp4"), "preview": (f"{task_id}/poster.jpg", "image/jpeg")}
    return {"result": (f"{task_id}/result.png", "image/png"), "preview": (f"{task_id}/preview.jpg", "image/jpeg")}


def resolve_seed(seed, rng: random.Random | None = None) -> int:
    """-1 (or none) asks for a random seed in 0..2147483647; any other value is used as given."""
    if seed is None or seed < 0:
        return (rng or random.SystemRandom()).randint(0, SEED_MAX)
    return int(seed)


def styled_prompt(model: str, prompt: str, mode: str | None = None) -> str:
    """The prompt with the model's trained conventions added, unless the user already wrote them.

    AniSora's score suffix goes only to AniSora's own weights (i2v): the Wan
    base behind anisora t2v was not trained with it.
    """
    text = prompt.strip()
    if model == "pony" and not text.lower().startswith("score_9"):
        return PONY_PREFIX + text
    if model == "anisora" and mode != "t2v" and "motion score" not in text.lower():
        return text.rstrip(" .") + "." + ANISORA_SUFFIX
    return text


def pipeline_plan(sub: dict) -> dict:
    """Which runner serves the task and the keyword arguments of its pipeline call.

    Returns {"model", "runner", "fps", "kwargs"}. The generator, callback and
    the prepared input image are added by the GPU code; everything that depends
    only on the request is decided here so that it can be tested. Names follow
    the diffusers 0.40 pipelines' __call__ (WanPipeline for anisora t2v,
    WanImageToVideoPipeline for i2v, StableDiffusionXLPipeline, FluxPipeline).
    """
    model, p = sub["model"], sub["params"]
    runner = runner_for(model, sub["mode"])
    kwargs = {
        "prompt": styled_prompt(model, sub["prompt"], sub["mode"]),
        "width": p["width"],
        "height": p["height"],
        "num_inference_steps": p["steps"],
        "guidance_scale": float(p["guidance"]),
    }
    neg = (sub.get("negative_prompt") or "").strip()
    if model == "flux":
        # FLUX.1-dev is guidance-distilled: guidance_scale is its embedded
        # guidance, there is no negative prompt, T5 takes up to 512 tokens.
        kwargs["max_sequence_length"] = 512
        return {"model": model, "runner": runner, "kwargs": kwargs, "fps": None}
    if model == "pony":
        if neg:
            kwargs["negative_prompt"] = neg
        # No clip_skip: diffusers' SDXL pipeline already takes CLIP's penultimate
        # layer, which is what Pony's "clip skip 2" means in A1111/ComfyUI terms;
        # clip_skip=2 here would go two layers further.
        return {"model": model, "runner": runner, "kwargs": kwargs, "fps": None}
    kwargs["negative_prompt"] = neg or WAN_NEGATIVE
    kwargs["num_frames"] = p["num_frames"]
    kwargs["output_type"] = "np"
    kwargs["max_sequence_length"] = 512
    return {"model": model, "runner": runner, "kwargs": kwargs, "fps": p["fps"]}


def clean_error(msg, secrets=()) -> str:
    """An error text fit for the wire: no secret values, one line, bounded."""
    text = str(msg)
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    text = " ".join(text.split())
    if len(text) > MAX_ERROR:
        text = text[: MAX_ERROR - 3] + "..."
    return text or "generation failed"


def call_outcome(exc: BaseException) -> tuple[str, str]:
    """How a FunctionCall.get(timeout=0) exception reads: running, unknown, or failed.

    Matched by class name so this stays importable without Modal. Modal's
    FunctionTimeoutError is itself a TimeoutError, so it is checked first.
    """
    names = [c.__name__ for c in type(exc).__mro__]
    if "FunctionTimeoutError" in names:
        return STATUS_FAILED, "the GPU job ran past its time limit"
    if "OutputExpiredError" in names:
        return "unknown", ""
    if "TimeoutError" in names:
        return STATUS_PROCESSING, ""
    if "InputCancellation" in names or "CancelledError" in names:
        return STATUS_FAILED, "the GPU job was cancelled"
    return STATUS_FAILED, "the GPU job crashed: " + type(exc).__name__


def expired(record: dict, now: float, retention: float = RETENTION_SECONDS) -> bool:
    """Finished tasks are forgotten after the retention; active ones never are."""
    if not isinstance(record, dict) or record.get("status") not in TERMINAL:
        return False
    ended = record.get("finished_at") or record.get("created_at") or 0
    return now - ended > retention


def hf_secret_name(environ) -> tuple[str, bool]:
    """(secret name, required). GOONI_HF_SECRET="" turns it off; a name makes it required."""
    if "GOONI_HF_SECRET" in environ:
        name = environ["GOONI_HF_SECRET"].strip()
        return name, bool(name)
    return HF_SECRET_DEFAULT, False


def task_key(task_id: str) -> str:
    return "task:" + task_id


def call_key(task_id: str) -> str:
    # Kept apart from the task record so recording it never races the job's progress writes.
    return "call:" + task_id


# ---- Capacity ---------------------------------------------------------------


class Slots:
    """`capacity` numbered run slots in a shared store: the race-free running-task counter.

    A task runs only while it holds a slot. Claiming is one atomic
    put-if-absent per slot in the store (modal.Dict.put(skip_if_exists=True)
    is atomic on Modal's side), so two concurrent claims can never share a
    slot and no more than `capacity` tasks hold one, across processes. Counting
    is one call (the store's size): nothing scans the task records.

    Releasing pops the slot and puts it back if it turns out to hold another
    task (a late, repeated release); a lock makes that pop-and-restore atomic
    within this process, and the web function runs in one container.

    The store needs put_if_absent(key, value) -> bool, get(key), pop(key) -> value or None, count() -> int.
    """

    def __init__(self, store, capacity: int = CAPACITY):
        self.store = store
        self.capacity = capacity
        self.lock = threading.Lock()

    @staticmethod
    def key(i: int) -> str:
        return f"slot:{i}"

    def claim(self, task_id: str) -> int | None:
        """The slot task_id now holds, or None when all are taken."""
        with self.lock:
            for i in range(self.capacity):
                if self.store.put_if_absent(self.key(i), task_id):
                    return i
            return None

    def release(self, task_id: str, slot) -> bool:
        """Free slot `slot` if task_id holds it; True when it did. Repeating it is harmless."""
        if not isinstance(slot, int) or slot < 0:
            return False
        with self.lock:
            if self.store.get(self.key(slot)) != task_id:  # the usual repeat: a read, nothing moves
                return False
            held = self.store.pop(self.key(slot))
            if held is not None and held != task_id:  # changed hands in between: put it back
                self.store.put_if_absent(self.key(slot), held)
                return False
            return held is not None

    def holders(self) -> dict:
        """{slot: task id} for the held slots: `capacity` point reads."""
        out = {}
        for i in range(self.capacity):
            tid = self.store.get(self.key(i))
            if tid is not None:
                out[i] = tid
        return out

    def running(self) -> int:
        """How many slots are held."""
        return self.store.count()


def stale_slots(holders: dict, records: dict) -> list:
    """[(slot, task id)] whose task no longer runs: forgotten (deleted, swept) or finished.

    `records` maps task id to its stored record or None. Releasing these is how
    a slot comes back when Gooni stopped polling a task.
    """
    return [(slot, tid) for slot, tid in sorted(holders.items()) if not is_active(records.get(tid))]


def admit(task_id: str, existing, slots: Slots, reclaim) -> tuple[str, int | None]:
    """("repeat", None) for a known id, ("start", slot) when a slot was claimed, ("busy", None) otherwise.

    A known id answers as the first time even when the workspace is full. When
    no slot is free, `reclaim()` releases stale ones and the claim is tried once more.
    """
    if existing is not None:
        return "repeat", None
    slot = slots.claim(task_id)
    if slot is None:
        reclaim()
        slot = slots.claim(task_id)
    if slot is None:
        return "busy", None
    return "start", slot


class DictStore:
    """Slots' store over a modal.Dict (or anything with its get/put/pop/len)."""

    def __init__(self, d):
        self.d = d

    def put_if_absent(self, key, value) -> bool:
        return bool(self.d.put(key, value, skip_if_exists=True))

    def get(self, key):
        return self.d.get(key)

    def pop(self, key):
        return self.d.pop(key, None)

    def count(self) -> int:
        return int(self.d.len())


# ---------------------------------------------------------------------------
# Modal wiring. Nothing below runs in the unit tests.
# ---------------------------------------------------------------------------

if modal is not None:
    app = modal.App(APP_NAME)
    tasks = modal.Dict.from_name(TASKS_DICT, create_if_missing=True)
    slot_dict = modal.Dict.from_name(SLOTS_DICT, create_if_missing=True)
    media_vol = modal.Volume.from_name(MEDIA_VOLUME, create_if_missing=True)
    models_vol = modal.Volume.from_name(MODELS_VOLUME, create_if_missing=True)
    # Inference only reads weights: `download` is the one writer
    # (Volume.with_mount_options needs modal>=1.5, read_only() before it).
    if hasattr(models_vol, "with_mount_options"):
        models_ro = models_vol.with_mount_options(read_only=True)
    else:  # pragma: no cover - older clients
        models_ro = models_vol.read_only()

    # Every package pinned (those not named below at the newest release the
    # package registry listed when this was written). diffusers 0.40.0
    # (2026-08-20) is tested by its CI with torch 2.10.0 / torchvision 0.25.0
    # (.github/workflows/nightly_tests.yml) and pins transformers 5.3.0 in its
    # examples; it needs huggingface-hub >=1.23,<2 (1.28.0 is 2026-08-18), which
    # downloads through hf-xet (>=1.5.2,<2): HF_HUB_ENABLE_HF_TRANSFER is gone.
    GPU_PACKAGES = (
        "torch==2.10.0",
        "torchvision==0.25.0",  # transformers' fast CLIP image processor for Wan's image encoder
        "diffusers==0.40.0",
        "transformers==5.3.0",
        "accelerate==1.15.0",
        "huggingface-hub==1.28.0",
        "hf-xet==1.8.0",
        "safetensors==0.8.0",
        "sentencepiece==0.2.3",
        "protobuf==7.36.2",
        "ftfy==6.3.1",  # Wan's prompt cleaning
        "imageio==2.38.1",
        "imageio-ffmpeg==0.8.1",  # ships an ffmpeg with libx264
        "pillow==13.0.0",
        "numpy==2.5.5",
    )
    web_image = modal.Image.debian_slim(python_version="3.12").uv_pip_install("fastapi==0.163.2")
    gpu_image = (
        modal.Image.debian_slim(python_version="3.12")
        .uv_pip_install(*GPU_PACKAGES)
        .env({"HF_HOME": HF_HOME})
    )

    def _hf_secrets() -> list:
        """The HF token secret for `download`, when it exists at deploy/run time.

        Secrets are bound when the app is deployed or run; inside a container the
        list is not used again, so the existence check runs only locally.
        """
        name, required = hf_secret_name(os.environ)
        if not name:
            return []
        secret = modal.Secret.from_name(name)
        if required or not modal.is_local():
            return [secret]
        try:
            secret.hydrate()
        except Exception:  # missing secret: go on without it (ungated models only)
            print(f"gooni: no Modal secret {name!r}: no HF_TOKEN, so FLUX.1-dev is neither downloaded nor listed")
            return []
        return [secret]

    HF_SECRETS = _hf_secrets()
    HAS_HF_SECRET = "1" if HF_SECRETS else "0"

    # ---- Weights: one-off download ----------------------------------------

    def _snapshot(spec: dict, token: str | None = None, offline: bool = False) -> str:
        from huggingface_hub import snapshot_download

        return snapshot_download(spec["repo"], revision=spec["revision"], allow_patterns=spec["allow"],
                                 token=token or None, local_files_only=offline)

    def _sha256(path: str) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(8 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    def _anisora_dir() -> str:
        return f"{CONVERTED_DIR}/anisora-{weights_fingerprint('anisora')}"

    def _fetch(key: str, token: str | None) -> None:
        """Download one runner's pinned files into the Volume (and convert AniSora's transformer)."""
        for spec in WEIGHTS[key]:
            print(f"gooni: {key}: {spec['repo']}@{spec['revision']} {spec['allow']}", flush=True)
            path = _snapshot(spec, token)
            for name, want in spec.get("sha256", {}).items():
                got = _sha256(os.path.join(path, name))
                if got != want:
                    raise RuntimeError(f"{spec['repo']}/{name} has SHA-256 {got}, expected {want}: not using it")
        if key == "anisora":
            _convert_anisora()

    def _convert_anisora() -> None:
        """AniSora V3.1's transformer (Wan original layout) into diffusers layout, once.

        WanTransformer3DModel.from_single_file takes a state dict in Wan's
        original or ComfyUI layout (diffusers loaders/single_file_utils.py:
        "head.modulation" marks Wan; patch_embedding's input width picks I2V-14B),
        with the pipeline's transformer config from the pinned Wan 2.1 I2V 480P
        repository. Doing it here keeps a 14B re-keying out of every cold start.
        """
        import glob

        import torch
        from diffusers import WanTransformer3DModel
        from safetensors.torch import load_file

        out = _anisora_dir()
        done = os.path.join(out, ".gooni-complete")  # written last: a crash mid-save is redone
        if os.path.exists(done):
            print(f"gooni: anisora: {out} already converted", flush=True)
            return
        src, base = (_snapshot(s, offline=True) for s in WEIGHTS["anisora"])
        shards = sorted(glob.glob(os.path.join(src, "V3.1", "diffusion_pytorch_model*.safetensors")))
        if not shards:
            raise RuntimeError("no V3.1/diffusion_pytorch_model*.safetensors in IndexTeam/Index-anisora at the "
                               "pinned revision: check the repository layout and WEIGHTS['anisora']")
        state = {}
        for shard in shards:  # to bf16 shard by shard: fp32 weights would need twice the RAM
            state.update({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(shard).items()})
        model = WanTransformer3DModel.from_single_file(
            state, config=base, subfolder="transformer", torch_dtype=torch.bfloat16, local_files_only=True)
        del state
        model.save_pretrained(out, safe_serialization=True, max_shard_size="10GB")
        with open(done, "w") as f:
            f.write(weights_fingerprint("anisora") + "\n")
        print(f"gooni: anisora: converted {len(shards)} shard(s) into {out}", flush=True)

    # The one writer of the weights Volume, run by hand (never by a task), so no
    # two containers ever race to download into it. hf-xet's chunk cache stays
    # on local disk, out of the Volume.
    @app.function(image=gpu_image, volumes={MODELS_DIR: models_vol}, secrets=HF_SECRETS,
                  env={"HF_XET_HIGH_PERFORMANCE": "1", "HF_XET_CACHE": "/tmp/hf-xet"},
                  cpu=8.0, memory=96 * 1024, ephemeral_disk=64 * 1024, timeout=3 * 3600)
    def download(models: str = "") -> None:
        """Seed the weights Volume: `modal run modal/modal_app.py::download [--models anisora,pony]`.

        A model's every runner is fetched (anisora: AniSora for i2v and the Wan
        2.1 T2V base for t2v); what is already in the Volume is not fetched again.
        """
        token = os.environ.get("HF_TOKEN", "").strip()
        todo, skipped = download_plan(models, bool(token))
        for model, why in skipped:
            print(f"gooni: {model}: skipped: {why}", flush=True)
        keys = [key for model in todo for key in runners_of(model)]
        done = {}
        for key in keys:
            try:
                _fetch(key, token)
            except Exception as exc:
                print(f"gooni: {key}: FAILED: {clean_error(exc, (token,))}", flush=True)
                continue
            done[key] = weights_fingerprint(key)
        models_vol.commit()
        ready = tasks.get(READY_KEY) or {}
        if not isinstance(ready, dict):
            ready = {}
        ready.update(done)
        tasks.put(READY_KEY, ready)
        # Gated models count here too: the token that fetched them is the one the deploy needs.
        print(f"gooni: ready now: {served_models(ready, True)}", flush=True)
        if len(done) != len(keys):
            raise RuntimeError("some weights failed to download: see the lines above")

    # ---- GPU side: one class per runner -----------------------------------

    def _update(task_id: str, status: str, progress: int | None = None, error: str | None = None, **fields) -> dict:
        """Write one transition; raise TaskGone if the task was deleted meanwhile."""
        rec = tasks.get(task_key(task_id))
        if rec is None:
            raise TaskGone(task_id)
        nxt = transition(rec, status, time.time(), progress=progress, error=error, **fields)
        if nxt is None:
            return rec
        if nxt != rec:
            tasks.put(task_key(task_id), nxt)
        return nxt

    def _load(key: str):
        """The runner's pipeline on the GPU, built from the weights Volume only (offline)."""
        import torch

        if key == "anisora":
            from diffusers import (AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline,
                                   WanTransformer3DModel)
            from transformers import CLIPVisionModel

            base = _snapshot(WEIGHTS["anisora"][1], offline=True)
            transformer = WanTransformer3DModel.from_pretrained(_anisora_dir(), torch_dtype=torch.bfloat16)
            # diffusers' Wan I2V example keeps the image encoder and the VAE in fp32
            # (pipeline_wan_i2v.py EXAMPLE_DOC_STRING); the VAE is fragile in bf16.
            image_encoder = CLIPVisionModel.from_pretrained(base, subfolder="image_encoder", torch_dtype=torch.float32)
            vae = AutoencoderKLWan.from_pretrained(base, subfolder="vae", torch_dtype=torch.float32)
            pipe = WanImageToVideoPipeline.from_pretrained(
                base, transformer=transformer, image_encoder=image_encoder, vae=vae, torch_dtype=torch.bfloat16)
            pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=ANISORA_SHIFT)
        elif key == "wan21-t2v":
            from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline

            base = _snapshot(WEIGHTS["wan21-t2v"][0], offline=True)
            # As diffusers' WanPipeline example (pipeline_wan.py EXAMPLE_DOC_STRING,
            # v0.40.0): the VAE in fp32, the rest in bf16 (the fp32 shards are cast
            # while loading), UniPC with the shift set explicitly.
            vae = AutoencoderKLWan.from_pretrained(base, subfolder="vae", torch_dtype=torch.float32)
            pipe = WanPipeline.from_pretrained(base, vae=vae, torch_dtype=torch.bfloat16)
            pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=WAN_T2V_SHIFT)
        elif key == "pony":
            from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

            ckpt, sdxl = (_snapshot(s, offline=True) for s in WEIGHTS["pony"])
            pipe = StableDiffusionXLPipeline.from_single_file(
                os.path.join(ckpt, PONY_FILE), config=sdxl, torch_dtype=torch.float16, local_files_only=True)
            # Pony's authors recommend Euler a.
            pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        elif key == "flux":
            from diffusers import FluxPipeline

            pipe = FluxPipeline.from_pretrained(_snapshot(WEIGHTS["flux"][0], offline=True), torch_dtype=torch.bfloat16)
            pipe.vae.enable_tiling()  # large sizes decode in tiles instead of running out of memory
        else:
            raise ValueError(f"no pipeline for runner {key!r}")
        pipe.to("cuda")
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _input_image(sub: dict):
        """The i2v input upright (EXIF orientation applied), cropped to the frame's aspect, resized."""
        import io

        from PIL import Image

        img = Image.open(io.BytesIO(sub["image"]))
        img.load()
        op = ORIENTATION_TRANSPOSE.get((sub.get("image_info") or {}).get("orientation", 1))
        if op:
            img = img.transpose(Image.Transpose[op])
        img = img.convert("RGB")
        w, h = sub["params"]["width"], sub["params"]["height"]
        return img.crop(cover_crop(img.width, img.height, w, h)).resize((w, h), Image.Resampling.LANCZOS)

    def _write_video(frames, path: str, fps: int):
        """Encode H.264/yuv420p MP4 with faststart (browsers play it); return the first frame."""
        import imageio_ffmpeg
        import numpy as np

        arr = np.asarray(frames)
        if arr.ndim == 5:  # (batch, frames, h, w, c)
            arr = arr[0]
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
        h, w = arr.shape[1], arr.shape[2]
        writer = imageio_ffmpeg.write_frames(
            path, (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
            output_params=["-crf", "18", "-preset", "medium", "-movflags", "+faststart"],
            macro_block_size=1,
        )
        writer.send(None)
        for frame in arr:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        return arr[0]

    def _run(pipe, task_id: str, sub: dict) -> None:
        import torch
        from PIL import Image

        try:
            _update(task_id, STATUS_PROCESSING, PROGRESS_STARTED)
            plan = pipeline_plan(sub)
            kwargs = dict(plan["kwargs"])
            seed = resolve_seed(sub["params"].get("seed", -1))
            kwargs["generator"] = torch.Generator("cuda").manual_seed(seed)
            if sub["mode"] == "i2v":
                kwargs["image"] = _input_image(sub)
            _update(task_id, STATUS_PROCESSING, PROGRESS_LOADED, seed=seed)
            total = kwargs["num_inference_steps"]
            last = [PROGRESS_LOADED]

            def on_step(_pipe, step, _timestep, cb_kwargs):
                p = step_progress(step, total)
                if p != last[0]:  # one Dict write per visible change, not per step
                    last[0] = p
                    _update(task_id, STATUS_PROCESSING, p)
                return cb_kwargs

            kwargs["callback_on_step_end"] = on_step
            with torch.inference_mode():
                out = pipe(**kwargs)

            files = media_files(task_id, sub["type"])
            os.makedirs(os.path.join(MEDIA_DIR, task_id), exist_ok=True)
            result_path = os.path.join(MEDIA_DIR, files["result"][0])
            preview_path = os.path.join(MEDIA_DIR, files["preview"][0])
            if sub["type"] == "video":
                first = _write_video(out.frames, result_path, plan["fps"])
                Image.fromarray(first).save(preview_path, "JPEG", quality=85)
            else:
                image = out.images[0]
                image.save(result_path, "PNG")
                image.convert("RGB").save(preview_path, "JPEG", quality=85)
            _update(task_id, STATUS_PROCESSING, PROGRESS_ENCODED)
            # Media must be visible to the web function before anyone can see "done".
            media_vol.commit()
            _update(
                task_id, STATUS_DONE,
                result={"path": files["result"][0], "content_type": files["result"][1], "size": os.path.getsize(result_path)},
                preview={"path": files["preview"][0], "content_type": files["preview"][1], "size": os.path.getsize(preview_path)},
            )
        except TaskGone:
            return
        except Exception as exc:  # any model/IO failure ends the task, with a clean reason
            try:
                _update(task_id, STATUS_FAILED, error=clean_error(f"{type(exc).__name__}: {exc}"))
            except TaskGone:
                pass
            raise

    def _gpu_opts(key: str) -> dict:
        """@app.cls options of a runner's GPU class: its GPU, RAM, CPU, Volumes and limits."""
        video = MODELS[runner_model(key)]["type"] == "video"
        res = RESOURCES[key]
        return dict(
            image=gpu_image, gpu=res["gpu"], memory=res["memory"], cpu=res["cpu"],
            volumes={MODELS_DIR: models_ro, MEDIA_DIR: media_vol},
            env={"HF_HUB_OFFLINE": "1"},  # never fetch at run time: only the pinned, downloaded weights
            timeout=VIDEO_TIMEOUT if video else IMAGE_TIMEOUT,
            startup_timeout=VIDEO_STARTUP if video else IMAGE_STARTUP,
            max_containers=CAPACITY, scaledown_window=SCALEDOWN,
        )

    @app.cls(**_gpu_opts("anisora"))
    class AniSora:
        @modal.enter()
        def load(self):
            self.pipe = _load("anisora")

        @modal.method()
        def generate(self, task_id: str, sub: dict) -> None:
            _run(self.pipe, task_id, sub)

    # anisora t2v: the Wan 2.1 T2V 14B base, in its own containers.
    @app.cls(**_gpu_opts("wan21-t2v"))
    class WanT2V:
        @modal.enter()
        def load(self):
            self.pipe = _load("wan21-t2v")

        @modal.method()
        def generate(self, task_id: str, sub: dict) -> None:
            _run(self.pipe, task_id, sub)

    @app.cls(**_gpu_opts("pony"))
    class Pony:
        @modal.enter()
        def load(self):
            self.pipe = _load("pony")

        @modal.method()
        def generate(self, task_id: str, sub: dict) -> None:
            _run(self.pipe, task_id, sub)

    @app.cls(**_gpu_opts("flux"))
    class Flux:
        @modal.enter()
        def load(self):
            self.pipe = _load("flux")

        @modal.method()
        def generate(self, task_id: str, sub: dict) -> None:
            _run(self.pipe, task_id, sub)

    GPU_CLASSES = {"anisora": AniSora, "wan21-t2v": WanT2V, "pony": Pony, "flux": Flux}  # by runner key

    def _spawn(sub: dict):
        """Start a checked submission's GPU job on the class of its model and mode; the FunctionCall."""
        return GPU_CLASSES[runner_for(sub["model"], sub["mode"])]().generate.spawn(sub["task_id"], sub)

    # Housekeeping every 6 hours: forget finished tasks and their media after the
    # retention. This is the one full pass over the task Dict, off the request path.
    @app.function(image=web_image, schedule=modal.Period(hours=6), timeout=10 * 60)
    def sweep() -> None:
        now = time.time()
        for key, rec in list(tasks.items()):
            if isinstance(key, str) and key.startswith("task:") and expired(rec, now):
                tasks.pop(key, None)
                tasks.pop(call_key(rec["task_id"]), None)
                try:
                    media_vol.remove_file(rec["task_id"], recursive=True)
                except Exception:
                    pass  # no media (failed task) or already gone

    # ---- Web side --------------------------------------------------------

    slots = Slots(DictStore(slot_dict), CAPACITY)
    _cache: dict = {}
    _cache_lock = threading.Lock()

    def _cached(name: str, ttl: float, fn):
        now = time.monotonic()
        with _cache_lock:
            hit = _cache.get(name)
            if hit and now - hit[0] < ttl:
                return hit[1]
        value = fn()
        with _cache_lock:
            _cache[name] = (now, value)
        return value

    def _served() -> list:
        return _cached("served", 15.0, lambda: served_models(
            tasks.get(READY_KEY), os.environ.get("GOONI_HF_TOKEN_PRESENT") == "1"))

    def _release(rec) -> None:
        """Give back a finished task's slot, and note in its record that it holds none."""
        if not isinstance(rec, dict) or rec.get("slot") is None or is_active(rec):
            return
        slots.release(rec["task_id"], rec["slot"])
        cur = tasks.get(task_key(rec["task_id"]))
        if cur is not None and not is_active(cur) and cur.get("slot") is not None:
            tasks.put(task_key(rec["task_id"]), dict(cur, slot=None))

    def _mark_failed(task_id: str, msg: str):
        cur = tasks.get(task_key(task_id))
        if cur is None:
            return None
        nxt = transition(cur, STATUS_FAILED, time.time(), error=msg)
        if nxt is None:
            return cur
        tasks.put(task_key(task_id), nxt)
        return nxt

    def _watch(rec: dict) -> dict:
        """Notice a GPU job that died without writing its end (OOM kill, timeout); free its slot."""
        if not is_active(rec):
            _release(rec)
            return rec
        call_id = tasks.get(call_key(rec["task_id"]))
        if not call_id:
            return rec
        try:
            modal.FunctionCall.from_id(call_id).get(timeout=0)
        except BaseException as exc:  # noqa: BLE001 - classified, never swallowed blindly
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            status, msg = call_outcome(exc)
            if status != STATUS_FAILED:
                return rec
            rec = _mark_failed(rec["task_id"], msg) or rec
            _release(rec)
            return rec
        # Returned normally: the job wrote its own end; read it.
        rec = tasks.get(task_key(rec["task_id"])) or rec
        if not is_active(rec):
            _release(rec)
        return rec

    # Claiming a slot and storing the task's record happen under this lock, and so
    # does reclaiming: otherwise a reclaim could see a just-claimed slot whose
    # record is not written yet, take it for stale and hand it out twice.
    admission = threading.RLock()

    def _reclaim() -> None:
        """Release slots whose task finished, vanished or crashed: `capacity` reads, no scan."""
        with admission:
            holders = slots.holders()
            records = {tid: tasks.get(task_key(tid)) for tid in holders.values()}
            for slot, tid in stale_slots(holders, records):
                slots.release(tid, slot)
                _release(records.get(tid))  # and the record stops naming it
            for tid in holders.values():
                if is_active(records.get(tid)):
                    _watch(records[tid])

    def _reclaim_now_and_then() -> None:
        with _cache_lock:
            if time.monotonic() - _cache.get("reclaimed", -1e9) < 15.0:
                return
            _cache["reclaimed"] = time.monotonic()
        _reclaim()

    @app.function(image=web_image, cpu=0.5, memory=2048, timeout=5 * 60,
                  min_containers=1,  # always warm: a health check or status poll is never a cold start
                  max_containers=1,  # one process owns slot releases (see Slots)
                  env={"GOONI_HF_TOKEN_PRESENT": HAS_HF_SECRET})
    @modal.concurrent(max_inputs=50)
    @modal.asgi_app(label=WEB_LABEL, requires_proxy_auth=True)
    def web():
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response, StreamingResponse
        from starlette.concurrency import run_in_threadpool

        api = FastAPI(title="Gooni workspace", docs_url=None, redoc_url=None, openapi_url=None)

        def error(e: ApiError):
            headers = {"Cache-Control": "no-store"}
            if e.retry_after:
                headers["Retry-After"] = str(e.retry_after)
            return JSONResponse(e.body(), status_code=e.status, headers=headers)

        def ok(body, status=200):
            return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

        def load(task_id: str) -> dict:
            check_task_id(task_id)
            rec = tasks.get(task_key(task_id))
            if rec is None:
                raise ApiError(404, "task_not_found", "no such task")
            return rec

        @api.exception_handler(ApiError)
        def on_api_error(_req, exc: ApiError):
            return error(exc)

        @api.get("/health")
        def health():
            running = slots.running()
            if running:
                _reclaim_now_and_then()
                running = slots.running()
            return ok({"status": "ok", "models": _served(), "capacity": CAPACITY, "running": running})

        @api.post("/tasks")
        async def submit(request: Request):
            raw = await request.body()
            # Base64 decoding and sync Modal calls block; keep them off the event loop.
            return await run_in_threadpool(_submit, raw)

        def _submit(raw: bytes):
            sub = parse_submission(raw)
            if sub["model"] not in _served():
                raise ApiError(503, "model_unavailable",
                               f"model {sub['model']} is not ready here (weights not downloaded, or no HF token)",
                               retry_after=60)
            key = task_key(sub["task_id"])
            with admission:
                decision, slot = admit(sub["task_id"], tasks.get(key), slots, _reclaim)
                if decision == "busy":
                    raise ApiError(429, "at_capacity", "workspace is at capacity: try another", retry_after=5)
                if decision == "repeat":
                    return ok(first_answer(sub["task_id"]), 202)
                # The record claim is atomic too: of two racing sends of one id, one spawns.
                if not tasks.put(key, new_record(sub, time.time(), slot), skip_if_exists=True):
                    slots.release(sub["task_id"], slot)
                    return ok(first_answer(sub["task_id"]), 202)
            try:
                call = _spawn(sub)
            except Exception:
                # Nothing runs: forget the claim so Gooni's retry (or another account) starts clean.
                tasks.pop(key, None)
                slots.release(sub["task_id"], slot)
                raise ApiError(503, "spawn_failed", "could not start the GPU job: try again", retry_after=5)
            tasks.put(call_key(sub["task_id"]), call.object_id)
            return ok(first_answer(sub["task_id"]), 202)

        @api.get("/tasks/{task_id}")
        def status(task_id: str):
            return ok(status_view(_watch(load(task_id))))

        def stream(entry: dict):
            def chunks():
                yield from media_vol.read_file(entry["path"])

            headers = {"Cache-Control": "no-store"}
            if entry.get("size"):
                headers["Content-Length"] = str(entry["size"])
            return StreamingResponse(chunks(), media_type=entry["content_type"], headers=headers)

        @api.get("/tasks/{task_id}/result")
        def result(task_id: str):
            return stream(media_entry(load(task_id), "result"))

        @api.get("/tasks/{task_id}/preview")
        def preview(task_id: str):
            return stream(media_entry(load(task_id), "preview"))

        @api.delete("/tasks/{task_id}")
        def delete(task_id: str):
            rec = load(task_id)
            if tasks.pop(task_key(task_id), None) is None:
                raise ApiError(404, "task_not_found", "no such task")
            call_id = tasks.pop(call_key(task_id), None)
            if call_id and is_active(rec):
                try:
                    modal.FunctionCall.from_id(call_id).cancel()
                except Exception:
                    pass  # already finished; the job also stops itself when its record is gone
            if rec.get("slot") is not None:
                slots.release(task_id, rec["slot"])
            try:
                media_vol.remove_file(task_id, recursive=True)
            except Exception:
                pass  # no media yet
            return Response(status_code=204, headers={"Cache-Control": "no-store"})

        @api.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def not_found(path: str):
            raise ApiError(404, "not_found", "no such route")

        return api
