"""Gooni's GPU workspace on Modal: serves Workspace API v1 (CONTRACT.md section 8).

Deploy with `modal deploy modal/modal_app.py`; the web endpoint then answers at
https://{workspace}--gooni-inference.modal.run, the default GG_WORKSPACE_URL.

The file has two halves. The top half is plain Python (stdlib only): request
validation, the idempotency decision, progress arithmetic, state transitions and
the mapping of Gooni params to diffusers keyword arguments. It is what
test_modal_app.py checks, with no Modal, FastAPI, torch or GPU present. The bottom
half, built only when `modal` imports, wires that logic to Modal: one CPU web
function (FastAPI) that owns the HTTP API, and GPU functions spawned per task.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import re
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

# The app and endpoint label make the URL https://{workspace}--gooni-inference.modal.run.
APP_NAME = "gooni-inference"
WEB_LABEL = "gooni-inference"
TASKS_DICT = "gooni-tasks"
MEDIA_VOLUME = "gooni-media"
MODELS_VOLUME = "gooni-models"
# Attached when it exists at deploy time; holds HF_TOKEN for gated repos (FLUX.1-dev).
HF_SECRET_DEFAULT = "gooni-hf"

MEDIA_DIR = "/media"
MODELS_DIR = "/models"

# Concurrent tasks this workspace admits; also the GPU autoscaling ceiling, so it
# bounds spend. Gooni's account `capacity` should not exceed it.
CAPACITY = 4
GPU_VIDEO = "A100-80GB"  # Wan 14B in bf16 (~28 GB) + umT5-XXL + VAE activations at 832x480x81
GPU_IMAGE = "L40S"  # FLUX.1 (12B bf16 ~24 GB + T5) and SDXL fit in 48 GB
VIDEO_TIMEOUT = 30 * 60  # matches GG_TTL_VIDEO: Gooni gives up on the task then anyway
IMAGE_TIMEOUT = 10 * 60  # matches GG_TTL_IMAGE
RETENTION_SECONDS = 48 * 3600  # finished tasks and their media are swept after this
MAX_BODY = 16 << 20  # the simulator's bound; a 10 MiB input image is ~13.4 MiB in base64
MAX_PROMPT = 4000
MAX_ERROR = 1024  # the Go client keeps at most this much of an error text

# fullmatch, not match: "$" would let a trailing newline through.
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

STATUS_PENDING = "pending"
STATUS_PROCESSING = "processing"
STATUS_DONE = "done"
STATUS_FAILED = "failed"
ACTIVE = (STATUS_PENDING, STATUS_PROCESSING)
TERMINAL = (STATUS_DONE, STATUS_FAILED)

# What each model id serves: its media type and the modes it takes (catalog names).
MODELS = {
    "anisora": {"type": "video", "modes": ("i2v", "t2v")},
    "phr00t": {"type": "video", "modes": ("t2v", "i2v")},
    "pony": {"type": "image", "modes": ("t2i",)},
    "flux": {"type": "image", "modes": ("t2i",)},
}
MODEL_IDS = tuple(MODELS)

# Hugging Face repos behind each model. Change them here; nothing else names a repo.
#
# anisora: AniSora V2 (IndexTeam/Index-anisora) is a fine-tune of Wan2.1-I2V-14B,
#   published in Wan's original (non-diffusers) layout. We serve its base, Wan 2.1
#   14B in diffusers format, at AniSora's native 480p/81 frames/16 fps; point these
#   at a diffusers conversion of the AniSora weights to serve AniSora proper.
# phr00t: Phr00t's "WAN2.2 Rapid AllInOne" is a ComfyUI checkpoint (Wan 2.2 with
#   speed LoRAs merged, hence the catalog's 4 steps / guidance 1) that diffusers
#   cannot load as-is. We serve Wan 2.2 TI2V-5B, which does t2v and i2v in one
#   checkpoint on a smaller GPU budget; at 4 steps it is soft, so raise steps in
#   the catalog or swap in a distilled diffusers repo here.
# flux: FLUX.1-dev matches the catalog defaults (28 steps, guidance 3.5) but is
#   gated: it needs HF_TOKEN (secret gooni-hf) and its license accepted. Without a
#   token we fall back to FLUX.1-schnell (Apache-2.0, ungated, guidance-free).
# pony: Pony Diffusion V6 XL ships as one SDXL .safetensors file, loaded with
#   StableDiffusionXLPipeline.from_single_file and clip skip 2 as its authors ask.
REPOS = {
    ("anisora", "t2v"): "Wan-AI/Wan2.1-T2V-14B-Diffusers",
    ("anisora", "i2v"): "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    ("phr00t", "t2v"): "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    ("phr00t", "i2v"): "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
}
FLUX_DEV = "black-forest-labs/FLUX.1-dev"
FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
PONY_REPO = "LyliaEngine/Pony_Diffusion_V6_XL"
PONY_FILE = "ponyDiffusionV6XL_v6StartWithThisOne.safetensors"

# Defaults for params Gooni did not send (it always sends them; these keep a
# hand-made request safe). Values follow inference_settings.json.
DEFAULTS = {
    "anisora": {"width": 832, "height": 480, "num_frames": 81, "fps": 16, "steps": 30, "guidance": 5.0},
    "phr00t": {"width": 832, "height": 480, "num_frames": 81, "fps": 16, "steps": 4, "guidance": 1.0},
    "pony": {"width": 1024, "height": 1024, "steps": 25, "guidance": 7.0},
    "flux": {"width": 1024, "height": 1024, "steps": 28, "guidance": 3.5},
}
# Hard ceilings that protect the GPU from a request Gooni's catalog would never send.
PARAM_LIMITS = {
    "width": (64, 2048, int),
    "height": (64, 2048, int),
    "num_frames": (1, 241, int),
    "fps": (1, 60, int),
    "steps": (1, 100, int),
    "guidance": (0.0, 30.0, float),
    "seed": (-1, 2**31 - 1, int),
}
SEED_MAX = 2**31 - 1

# Progress bands: loading weights, denoising, encoding. 100 is only ever "done".
PROGRESS_STARTED = 2
PROGRESS_LOADED = 10
PROGRESS_DENOISED = 90
PROGRESS_ENCODED = 95


class ApiError(Exception):
    """An answer other than success: HTTP status plus the simulator's error shape."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

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
    """Known params type-checked and bounded, defaults filled, unknown names ignored."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ApiError(400, "invalid_params", "params must be an object")
    out = dict(DEFAULTS[model])
    out["seed"] = -1
    for name, (lo, hi, kind) in PARAM_LIMITS.items():
        if name not in params or params[name] is None:
            continue
        v = params[name]
        if not _is_number(v) or v != v:  # v != v: NaN
            raise ApiError(400, "invalid_params", f"params.{name} must be a number")
        # Bounds before conversion: float() of a huge JSON integer would overflow.
        if v < lo or v > hi:
            raise ApiError(400, "invalid_params", f"params.{name} must be within {lo}..{hi}")
        if kind is int:
            if v != int(v):
                raise ApiError(400, "invalid_params", f"params.{name} must be an integer")
            v = int(v)
        else:
            v = float(v)
        out[name] = v
    for name in ("width", "height"):
        if out[name] % 8:
            raise ApiError(400, "invalid_params", f"params.{name} must be a multiple of 8")
    if MODELS[model]["type"] == "video" and (out["num_frames"] - 1) % 4:
        # Wan's VAE compresses time by 4: frame counts are 4k+1.
        raise ApiError(400, "invalid_params", "params.num_frames must be 4k+1")
    return out


def decode_image(value) -> bytes:
    """The i2v input: base64 or a data URL, PNG/JPEG/WebP by its magic bytes."""
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid_image", "image must be a base64 string")
    if value.startswith("data:"):
        _, _, value = value.partition(",")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_image", "image is not valid base64") from None
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff")
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        raise ApiError(400, "invalid_image", "image must be PNG, JPEG or WebP")
    return data


def parse_submission(raw: bytes) -> dict:
    """The body of POST /tasks, checked and normalized; ApiError says what is wrong."""
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", "body over 16 MiB")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "body must be a JSON task object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON task object")
    task_id = check_task_id(body.get("task_id"))
    typ = body.get("type")
    if typ not in ("image", "video"):
        raise ApiError(400, "invalid_type", "type must be image or video")
    model = body.get("model")
    if model not in MODELS:
        raise ApiError(400, "invalid_model", "model must be one of " + ", ".join(MODEL_IDS))
    if MODELS[model]["type"] != typ:
        raise ApiError(400, "invalid_type", f"model {model} makes {MODELS[model]['type']}, not {typ}")
    mode = body.get("mode") or MODELS[model]["modes"][0]
    if mode not in MODELS[model]["modes"]:
        raise ApiError(400, "invalid_mode", f"model {model} takes modes " + ", ".join(MODELS[model]["modes"]))
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
        raise ApiError(400, "invalid_prompt", f"prompt must be a non-empty string of at most {MAX_PROMPT} characters")
    negative = body.get("negative_prompt") or ""
    if not isinstance(negative, str) or len(negative) > MAX_PROMPT:
        raise ApiError(400, "invalid_prompt", "negative_prompt must be a string")
    params = normalize_params(model, body.get("params"))
    image = None
    if mode == "i2v":
        image = decode_image(body.get("image"))
    return {
        "task_id": task_id, "type": typ, "model": model, "mode": mode,
        "prompt": prompt, "negative_prompt": negative, "params": params, "image": image,
    }


def first_answer(task_id: str) -> dict:
    """What POST /tasks answers, the first time and every time after for that id."""
    return {"task_id": task_id, "status": STATUS_PENDING}


def submit_decision(existing, running: int, capacity: int = CAPACITY) -> str:
    """repeat: the id is known, answer as before; busy: 429; start: claim and spawn."""
    if existing is not None:
        return "repeat"
    if running >= capacity:
        return "busy"
    return "start"


def new_record(sub: dict, now: float) -> dict:
    """The task's state as first stored: no input image (the GPU job gets it directly)."""
    return {
        "task_id": sub["task_id"], "type": sub["type"], "model": sub["model"], "mode": sub["mode"],
        "status": STATUS_PENDING, "progress": 0, "error": None,
        "created_at": now, "started_at": None, "finished_at": None,
        "result": None, "preview": None,
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


def count_running(records) -> int:
    return sum(1 for r in records if is_active(r))


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


def resolve_seed(seed: int, rng: random.Random | None = None) -> int:
    """-1 asks for a random seed; any other value is used as given."""
    if seed is None or seed < 0:
        return (rng or random.SystemRandom()).randint(0, SEED_MAX)
    return int(seed)


def flux_repo(has_token: bool) -> str:
    return FLUX_DEV if has_token else FLUX_SCHNELL


def pipeline_plan(sub: dict, has_hf_token: bool) -> dict:
    """Which pipeline to load and the keyword arguments for its call.

    The generator, callback and input image are added by the GPU code; everything
    that depends only on the request is decided here so it can be tested.
    """
    model, mode, p = sub["model"], sub["mode"], sub["params"]
    kwargs = {
        "prompt": sub["prompt"],
        "width": p["width"],
        "height": p["height"],
        "num_inference_steps": p["steps"],
        "guidance_scale": float(p["guidance"]),
    }
    neg = sub.get("negative_prompt") or ""
    if model == "flux":
        repo = flux_repo(has_hf_token)
        if repo == FLUX_SCHNELL:
            # schnell is guidance-distilled: it ignores guidance and takes a 256-token T5 prompt.
            kwargs["guidance_scale"] = 0.0
            kwargs["max_sequence_length"] = 256
        else:
            kwargs["max_sequence_length"] = 512
        return {"kind": "flux", "repo": repo, "kwargs": kwargs, "fps": None}
    if neg:
        kwargs["negative_prompt"] = neg
    if model == "pony":
        kwargs["clip_skip"] = 2
        return {"kind": "sdxl", "repo": PONY_REPO, "file": PONY_FILE, "kwargs": kwargs, "fps": None}
    kwargs["num_frames"] = p["num_frames"]
    kwargs["output_type"] = "np"
    kind = "wan_i2v" if mode == "i2v" else "wan_t2v"
    return {"kind": kind, "repo": REPOS[(model, mode)], "kwargs": kwargs, "fps": p["fps"]}


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


# ---------------------------------------------------------------------------
# Modal wiring. Nothing below runs in the unit tests.
# ---------------------------------------------------------------------------

if modal is not None:
    app = modal.App(APP_NAME)
    tasks = modal.Dict.from_name(TASKS_DICT, create_if_missing=True)
    media_vol = modal.Volume.from_name(MEDIA_VOLUME, create_if_missing=True)
    models_vol = modal.Volume.from_name(MODELS_VOLUME, create_if_missing=True)

    web_image = modal.Image.debian_slim(python_version="3.11").pip_install("fastapi[standard]>=0.115")
    gpu_image = (
        modal.Image.debian_slim(python_version="3.11")
        .pip_install(
            "torch>=2.5",
            "diffusers>=0.35",  # Wan 2.2 support
            "transformers>=4.51",
            "accelerate>=1.2",
            "sentencepiece",
            "protobuf",
            "ftfy",  # Wan's prompt cleaning
            "huggingface_hub[hf_transfer]>=0.30",
            "imageio>=2.34",
            "imageio-ffmpeg>=0.5",  # ships an ffmpeg with libx264
            "pillow",
            "numpy",
        )
        .env({"HF_HOME": MODELS_DIR + "/hf", "HF_HUB_ENABLE_HF_TRANSFER": "1"})
    )

    def _hf_secrets() -> list:
        """The HF token secret, when it exists at deploy time.

        Secrets are bound when the app is deployed; inside a container the list is
        not used again, so the existence check runs only on the deploy machine.
        """
        name, required = hf_secret_name(os.environ)
        if not name:
            return []
        secret = modal.Secret.from_name(name)
        if required or not modal.is_local():
            return [secret]
        try:
            secret.hydrate()
        except Exception:  # missing secret: deploy without it (ungated repos only)
            print(f"gooni: no Modal secret {name!r}; deploying without HF_TOKEN (FLUX.1-schnell instead of -dev)")
            return []
        return [secret]

    HF_SECRETS = _hf_secrets()

    if modal.is_local() and os.environ.get("GG_WORKSPACE"):
        # Shown in Gooni's deploy log: the URL its health check is about to call.
        print(f"gooni: web endpoint will be https://{os.environ['GG_WORKSPACE']}--{WEB_LABEL}.modal.run "
              "(the Modal token decides the workspace; a non-default environment adds -<env> to the host)")

    # ---- GPU side --------------------------------------------------------

    _PIPES: dict = {}

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

    def _load_pipeline(plan: dict):
        import gc

        import torch

        key = (plan["kind"], plan["repo"])
        if key in _PIPES:
            return _PIPES[key]
        # One pipeline per container: two 14B models do not fit together.
        _PIPES.clear()
        gc.collect()
        torch.cuda.empty_cache()
        kind, repo = plan["kind"], plan["repo"]
        if kind == "flux":
            from diffusers import FluxPipeline

            pipe = FluxPipeline.from_pretrained(repo, torch_dtype=torch.bfloat16)
        elif kind == "sdxl":
            from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(repo, plan["file"])
            pipe = StableDiffusionXLPipeline.from_single_file(path, torch_dtype=torch.float16)
            # Pony's authors recommend Euler a.
            pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        else:
            from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanPipeline

            # Wan's VAE is numerically fragile in bf16; diffusers' examples keep it in fp32.
            vae = AutoencoderKLWan.from_pretrained(repo, subfolder="vae", torch_dtype=torch.float32)
            cls = WanImageToVideoPipeline if kind == "wan_i2v" else WanPipeline
            pipe = cls.from_pretrained(repo, vae=vae, torch_dtype=torch.bfloat16)
        pipe.to("cuda")
        models_vol.commit()  # keep freshly downloaded weights for the next container
        _PIPES[key] = pipe
        return pipe

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

    def _run(task_id: str, sub: dict) -> None:
        import io

        import torch
        from PIL import Image

        token = os.environ.get("HF_TOKEN", "")
        try:
            _update(task_id, STATUS_PROCESSING, PROGRESS_STARTED)
            plan = pipeline_plan(sub, bool(token))
            pipe = _load_pipeline(plan)
            _update(task_id, STATUS_PROCESSING, PROGRESS_LOADED)

            kwargs = dict(plan["kwargs"])
            seed = resolve_seed(sub["params"].get("seed", -1))
            kwargs["generator"] = torch.Generator("cuda").manual_seed(seed)
            if plan["kind"] == "wan_i2v":
                img = Image.open(io.BytesIO(sub["image"])).convert("RGB")
                kwargs["image"] = img.resize((kwargs["width"], kwargs["height"]), Image.LANCZOS)
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
                task_id, STATUS_DONE, seed=seed,
                result={"path": files["result"][0], "content_type": files["result"][1], "size": os.path.getsize(result_path)},
                preview={"path": files["preview"][0], "content_type": files["preview"][1], "size": os.path.getsize(preview_path)},
            )
        except TaskGone:
            return
        except Exception as exc:  # any model/IO failure ends the task, with a clean reason
            try:
                _update(task_id, STATUS_FAILED, error=clean_error(f"{type(exc).__name__}: {exc}", (token,)))
            except TaskGone:
                pass
            raise

    gpu_opts = dict(
        image=gpu_image,
        volumes={MODELS_DIR: models_vol, MEDIA_DIR: media_vol},
        secrets=HF_SECRETS,
        max_containers=CAPACITY,
        scaledown_window=5 * 60,  # a warm container skips the weight load for the next task
    )

    @app.function(gpu=GPU_VIDEO, timeout=VIDEO_TIMEOUT, **gpu_opts)
    def generate_video(task_id: str, sub: dict) -> None:
        _run(task_id, sub)

    @app.function(gpu=GPU_IMAGE, timeout=IMAGE_TIMEOUT, **gpu_opts)
    def generate_image(task_id: str, sub: dict) -> None:
        _run(task_id, sub)

    # Daily housekeeping: forget finished tasks and their media after the retention.
    @app.function(image=web_image, schedule=modal.Period(hours=6), timeout=10 * 60)
    def sweep() -> None:
        now = time.time()
        for key, rec in list(tasks.items()):
            if isinstance(key, str) and key.startswith("task:") and expired(rec, now):
                tasks.pop(key)
                try:
                    tasks.pop(call_key(rec["task_id"]))
                except KeyError:
                    pass
                try:
                    media_vol.remove_file(rec["task_id"], recursive=True)
                except Exception:
                    pass  # no media (failed task) or already gone

    # ---- Web side --------------------------------------------------------

    def _running() -> int:
        return count_running(rec for key, rec in tasks.items() if isinstance(key, str) and key.startswith("task:"))

    def _watch(rec: dict) -> dict:
        """Notice a GPU job that died without writing its end (OOM kill, timeout)."""
        if not is_active(rec):
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
            return _mark_failed(rec["task_id"], msg) or rec
        # Returned normally: the job wrote its own end; read it.
        return tasks.get(task_key(rec["task_id"])) or rec

    def _mark_failed(task_id: str, msg: str):
        cur = tasks.get(task_key(task_id))
        if cur is None:
            return None
        nxt = transition(cur, STATUS_FAILED, time.time(), error=msg)
        if nxt is None:
            return cur
        tasks.put(task_key(task_id), nxt)
        return nxt

    @app.function(image=web_image, timeout=5 * 60)
    @modal.concurrent(max_inputs=50)
    @modal.asgi_app(label=WEB_LABEL, requires_proxy_auth=True)
    def web():
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response, StreamingResponse

        api = FastAPI(title="Gooni workspace", docs_url=None, redoc_url=None, openapi_url=None)

        def error(e: ApiError, headers=None):
            return JSONResponse(e.body(), status_code=e.status, headers={"Cache-Control": "no-store", **(headers or {})})

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
            return error(exc, {"Retry-After": "5"} if exc.status == 429 else None)

        @api.get("/health")
        def health():
            return ok({"status": "ok", "models": list(MODEL_IDS), "capacity": CAPACITY, "running": _running()})

        @api.post("/tasks")
        async def submit(request: Request):
            from starlette.concurrency import run_in_threadpool

            raw = await request.body()
            # Base64 decoding and sync Modal calls block; keep them off the event loop.
            return await run_in_threadpool(_submit, raw)

        def _submit(raw: bytes):
            sub = parse_submission(raw)
            key = task_key(sub["task_id"])
            decision = submit_decision(tasks.get(key), _running())
            if decision == "busy":
                raise ApiError(429, "at_capacity", "workspace is at capacity: try another")
            if decision == "repeat":
                return ok(first_answer(sub["task_id"]), 202)
            # The claim is atomic: of two racing sends of one id, only one spawns a job.
            if not tasks.put(key, new_record(sub, time.time()), skip_if_exists=True):
                return ok(first_answer(sub["task_id"]), 202)
            fn = generate_video if sub["type"] == "video" else generate_image
            try:
                call = fn.spawn(sub["task_id"], sub)
            except Exception:
                # Nothing runs: forget the claim so Gooni's retry (or another account) starts clean.
                try:
                    tasks.pop(key)
                except KeyError:
                    pass
                raise ApiError(503, "spawn_failed", "could not start the GPU job: try again")
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
            try:
                tasks.pop(task_key(task_id))
            except KeyError:
                raise ApiError(404, "task_not_found", "no such task") from None
            try:
                call_id = tasks.pop(call_key(task_id))
            except KeyError:
                call_id = None
            if call_id and is_active(rec):
                try:
                    modal.FunctionCall.from_id(call_id).cancel()
                except Exception:
                    pass  # already finished; the job also stops itself when its record is gone
            try:
                media_vol.remove_file(task_id, recursive=True)
            except Exception:
                pass  # no media yet
            return Response(status_code=204, headers={"Cache-Control": "no-store"})

        @api.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def not_found(path: str):
            raise ApiError(404, "not_found", "no such route")

        return api
