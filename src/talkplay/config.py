"""Typed configs for every stage, and the three profiles: tiny (tests), small (laptop default), paper.

Each stage takes one dataclass; its attribute docstrings are the documentation. A resolved
config is saved as JSON beside every artifact (``asdict``) and can be read back with
``from_dict``. YAML files under ``configs/`` are only saved argument sets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class EmbedConfig:
    """Item embeddings, one encoder per modality."""

    encoders: dict[str, str] = field(default_factory=lambda: {
        "playlist": "item2vec", "semantic": "minilm", "metadata": "minilm",
        "lyrics": "minilm", "audio": "musicnn"})
    """Encoder name per modality (see ``talkplay.embed.ENCODERS``); any sentence-transformers or
    Hugging Face model name/path is accepted for the text modalities."""
    item2vec_dim: int = 128
    """Dimension of item2vec vectors (paper: 128)."""
    item2vec_window: int = 20
    """Skip-gram context window over a playlist."""
    item2vec_epochs: int = 20
    item2vec_min_count: int = 1
    item2vec_workers: int = 1
    """gensim worker threads. 1 (default): the same vectors bit for bit on every run; more
    train about that many times faster on as many cores (MPD's million playlists), but the
    vectors then depend on thread timing."""
    batch_size: int = 64
    """Texts or audio clips per encoder batch."""
    pseudo_tags: bool = True
    """Give tracks with audio but no tags the audio tagger's top tags (marked as pseudo)."""
    pseudo_tag_count: int = 5
    device: str = "auto"
    """"auto" picks CUDA when available, else CPU."""
    trust_remote_code: bool = False
    """Let text models run code shipped with their weights (nvidia/NV-Embed-v2 needs it)."""
    seed: int = 0


@dataclass
class TokenizerConfig:
    """K-means codebooks per modality."""

    k: int = 1024
    """Clusters per modality (paper: 1024), capped for small catalogs: see ``min_items_per_cluster``."""
    k_per_modality: dict[str, int] = field(default_factory=dict)
    """Overrides of ``k`` for single modalities."""
    min_items_per_cluster: int = 4
    """Cap rule: K_m = min(k, max(2, n_m // min_items_per_cluster)), where n_m = tracks that
    have modality m; never more than n_m, and 0 (only the none token) when n_m == 0."""
    niter: int = 25
    seed: int = 0


@dataclass
class ModelConfig:
    """The base LLM. Weights load in fp32; training runs under bf16 autocast on GPUs that
    support it (fp32 master weights for AdamW), and ``load_run`` takes the inference dtype."""

    base: str = "smollm2"
    """"smollm2" (packaged SmolLM2-135M-Instruct), "tiny" (small Llama from config, for tests),
    "random:llama-3.2-1b" / "random:smollm2-135m" (a published shape with random weights, for
    throughput benchmarks), or any Hugging Face causal-LM name or local path (e.g.
    meta-llama/Llama-3.2-1B-Instruct)."""
    tiny_layers: int = 2
    tiny_hidden: int = 64


@dataclass
class TrainConfig:
    """The training loop."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 20
    schedule: str = "cosine"
    """"cosine", "linear" or "constant" after warmup."""
    batch_size: int = 4
    """Sequences per micro-batch per process."""
    grad_accum: int = 1
    max_steps: int = 1000
    max_minutes: float | None = None
    """Stop (and save) after this wall-clock budget."""
    context_length: int = 512
    """Tokens per sequence (paper: 1024)."""
    self_sim_lambda: float = 0.1
    """Weight of the self-similarity loss (paper: 0.1; 0 for the ablation)."""
    playlist_share: float = 0.5
    """Playlist-continuation sequences per conversation sequence."""
    playlist_dropout: float = 0.0
    """Modality dropout (not in the paper): this share of the music blocks of warm tracks in
    training conversations shows ``<|playlist-none|>`` instead of the playlist code (seeded,
    fixed per conversation). Cold tracks carry that token, so without it the model never sees
    their blocks; validation conversations are rendered without dropout. 0 = the paper."""
    grounded_replies: bool = False
    """Show each music block's track facts (title, artists, album, year, tags) after it, as
    context the model is not trained to produce, so the reply that follows is written with the
    track in view (``lm.facts``; not in the paper). The run's recommender renders prompts and
    replies the same way."""
    dense_head: float = 0.0
    """Weight of the dense head's contrastive loss (not in the paper; LIGER-style): the hidden
    state at each trained ``<start_of_music>`` is projected into the tracks' content-embedding
    space and trained to pick its track (``talkplay.lm.dense_head``). It gives
    ``talkplay-hybrid`` a model score for tracks new to the catalog. 0 = no head (the paper)."""
    dense_temperature: float = 0.05
    """Softmax temperature of that loss."""
    dense_negatives: int = 16384
    """Catalog tracks each query is contrasted with: the whole catalog when it has at most this
    many, else the batch's own tracks plus a seeded sample of this many per step."""
    clip_grad: float = 1.0
    train_top_layers: int | None = None
    """Train only the top N transformer layers, the final norm and the (tied) embeddings: lower
    layers are frozen and no gradient flows below them (the input embeddings' output is
    detached), so no backward runs through the frozen layers. None trains every layer
    (the paper)."""
    token_init: str = "hewitt"
    """How new music-token embeddings start: "hewitt" (sampled from the mean and covariance of
    the existing embeddings, as in the paper) or "grounded" (each code token starts at the
    TF-IDF weighted mean embedding of its cluster's words; see ``talkplay.lm.grounding``)."""
    precision: str = "auto"
    """"bf16" (autocast to bfloat16, fp32 master weights), "fp32", or "auto": bf16 on CUDA GPUs
    that support it and on CPUs with bfloat16 matrix units (AMX or AVX512-BF16, where it is about
    twice as fast as fp32), fp32 elsewhere."""
    eval_every: int = 50
    eval_batches: int = 8
    save_every: int = 50
    seed: int = 0


@dataclass
class GenerateConfig:
    """Decoding; every sampling parameter is explicit (instruct models ship overriding defaults)."""

    mode: str = "beam"
    """"paper" (sample tokens, exact/partial match) or "beam" (catalog-constrained beam search)."""
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 0
    """0 disables top-k."""
    repetition_penalty: float = 1.0
    greedy: bool = False
    num_beams: int = 20
    max_reply_tokens: int = 48
    reply_lookup: int = 4
    """Prompt-lookup speculative decoding of the reply (``engine.generate_text(lookup=)``): up
    to this many tokens copied from the context are checked in one forward; 0 disables. Same
    distribution of replies, other random draws."""
    reply_guard: bool = True
    """While a reply is written, ban the catalog's tag, decade and year words that are false of
    the recommended track (``recommend.guard``; needs the run's dataset)."""
    exclude_seen: bool = True
    """Drop tracks already recommended or liked earlier in the conversation."""
    max_prompt_tokens: int | None = None
    """Longest prompt before the oldest turns are dropped; None = the training context minus
    64 tokens for the music block and reply (what training showed). A larger value keeps more
    of a long conversation at inference (the base model's positions go further than the
    fine-tuning context)."""
    seed: int = 0


@dataclass
class EvalConfig:
    systems: list[str] = field(default_factory=lambda: ["talkplay", "bm25", "dense", "clap",
                                                         "popularity"])
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 100])
    limit: int | None = None
    """Evaluate at most this many test conversations."""
    protocol: str = "auto"
    """"paper", "cpcd" or "auto" (cpcd for CPCD imports)."""


@dataclass
class Profile:
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)


def profile(name: str) -> Profile:
    """The named profile: "tiny" (tests, seconds), "small" (CPU default), "paper" (GPUs)."""
    if name == "tiny":
        return Profile(
            embed=EmbedConfig(item2vec_dim=16, item2vec_epochs=5),
            tokenizer=TokenizerConfig(k=16, niter=10),
            model=ModelConfig(base="tiny"),
            train=TrainConfig(lr=3e-3, warmup_steps=2, batch_size=4, max_steps=20,
                              context_length=256, eval_every=10, eval_batches=2, save_every=10),
            generate=GenerateConfig(num_beams=8, max_reply_tokens=8),
        )
    if name == "small":
        return Profile()
    if name == "paper":
        return Profile(
            tokenizer=TokenizerConfig(k=1024),
            model=ModelConfig(base="meta-llama/Llama-3.2-1B-Instruct"),
            train=TrainConfig(lr=1e-4, batch_size=6, grad_accum=1, context_length=1024,
                              max_steps=20_000, eval_every=500, save_every=500),
        )
    raise ValueError(f"unknown profile {name!r}; expected tiny, small or paper")


def asdict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict) -> T:
    """Rebuild a (nested) config dataclass from ``asdict`` output; unknown keys are an error."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    kwargs = {}
    for k, v in data.items():
        ftype = names[k].type
        sub = globals().get(ftype) if isinstance(ftype, str) else None
        kwargs[k] = from_dict(sub, v) if dataclasses.is_dataclass(sub) and isinstance(v, dict) else v
    return cls(**kwargs)
