"""One text pipeline, from text to result, for every way in: the web API
(app.py), the seed's `serve.get_model_api()`, the corpus command (tag.py) and
the Spark job (spark_tag.py).

    text -> sentences of tokens (nerserve.tagger.tokenizer) -> windows of at most
    nerserve.tagger.windows.MAX_TOKENS tokens -> tags and entity scores (the tagger,
    a slice of windows at a time) -> windows stitched back -> the result:
    tokens, tags, entities and the seed's aligned strings.

Limits are the caller's: the pipeline tags any text, in windows and slices
whose size bounds what one model call allocates.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerserve.tagger import files
from nerserve.tagger.backends import load_tagger
from nerserve.tagger.description import ModelDescription, describe
from nerserve.tagger.marginals import ScoredTags
from nerserve.tagger.memory import give_back_memory_if_grown, resident_bytes
from nerserve.tagger.tags import entity_spans
from nerserve.tagger.tokenizer import Token, min_token_count, tokenize
from nerserve.tagger.windows import Window, cut, stitch_tagged, windows

# Entity scores are rounded: more digits would be noise (the backends agree to ~1e-6).
SCORE_DIGITS = 4
# Tokens of windows tagged in one model call. A slice of 4,096 tokens takes
# about 0.1 s on one core, so a request that waits its turn between slices
# waits that long at most (app.py shares a worker between requests a slice at
# a time), and what one call allocates stays bounded whatever the request.
SLICE_TOKENS = 4096

# Between slices, what the model calls freed is handed back once the process
# has grown this much since the sentences came in: the model's buffers differ
# in size from one batch to the next, so malloc's heap would otherwise keep
# growing, slice after slice, to about twice this (BENCHMARKS.md, "What one
# request may cost").
SLICE_GROWTH_BYTES = 64 * 2**20

# One sentence for each tagger a model may have (nerserve.tagger.casing routes a
# sentence by its case): written as news is, for the cased one (and the typed
# one, which joins it there, where the directory has one), and in lower case,
# for the caseless one where the directory has one.
WARM_UP_TEXTS = ["Angela Merkel visited Washington.", "angela merkel visited washington."]

# Given the tokens a request has left to tag, a context in which one slice is
# tagged: app.py passes one that waits for the request's turn.
SliceTurn = Callable[[int], AbstractContextManager[Any]]


@dataclass
class Document:
    """A text and its sentences of tokens."""

    text: str
    sentences: list[list[Token]]

    @property
    def token_count(self) -> int:
        return sum(len(sentence) for sentence in self.sentences)


class TooManyTokens(ValueError):
    """Texts with more tokens than a budget: at least `counted` when the count
    stopped (the tokens of the texts tokenized, and a lower bound of the
    rest's), over `limit`."""

    def __init__(self, counted: int, limit: int):
        super().__init__(f"at least {counted} tokens; at most {limit}")
        self.counted, self.limit = counted, limit


def read_documents(texts: list[str], max_tokens: int | None = None) -> list[Document]:
    """The texts tokenized; TooManyTokens as soon as they must pass max_tokens
    in all: the tokens counted so far and a lower bound of the rest's
    (min_token_count) say so before the rest is tokenized, so that a body far
    over the budget is refused without tokenizing any of it."""
    if max_tokens is None:
        return [Document(text, tokenize(text)) for text in texts]
    bounds = [min_token_count(text) for text in texts]
    at_least, documents = sum(bounds), []
    for text, bound in zip(texts, bounds, strict=True):
        if at_least > max_tokens:
            break
        documents.append(Document(text, tokenize(text)))
        at_least += documents[-1].token_count - bound
    if at_least > max_tokens:
        raise TooManyTokens(at_least, max_tokens)
    return documents


class Pipeline:
    """A loaded tagger, and everything between it and a text."""

    def __init__(self, tagger: Any, info: dict[str, Any]):
        self.tagger = tagger
        self.info = info

    def warm_up(self) -> None:
        """Tag a sentence with each tagger of the model: the first prediction
        pays for lazy initialisation, and a tagger that cannot tag fails here,
        at start-up, not in a request."""
        self.tag(WARM_UP_TEXTS)

    def tag(self, texts: list[str], min_score: float = 0.0) -> list[dict[str, Any]]:
        """One result a text (annotate()), without the entities scored below min_score."""
        return list(self.tag_documents(read_documents(texts), min_score))

    def tag_documents(self, documents: list[Document], min_score: float = 0.0,
                      turn: SliceTurn | None = None) -> Iterator[dict[str, Any]]:
        """The results of texts already tokenized, one at a time: every sentence
        is tagged before this returns; each text's result is built when it is
        asked for, so that a caller that sends them on as they come (app.py)
        holds one text's result at a time. `turn` (see SliceTurn) lets other
        work go between slices."""
        sentences = [[t.text for t in sentence] for document in documents for sentence in document.sentences]
        tagged = iter(self.tag_sentences(sentences, turn))
        return (annotate(document.text, document.sentences, [next(tagged) for _ in document.sentences], min_score)
                for document in documents)

    def tag_tokens(self, sentences: list[list[str]]) -> list[list[str]]:
        """The tags of sentences given as tokens (CoNLL input), tagged as given."""
        return [tagged.tags for tagged in self.tag_sentences(sentences)]

    def tag_sentences(self, sentences: list[list[str]], turn: SliceTurn | None = None) -> list[ScoredTags]:
        """The tags and entity scores of sentences of words. Over-long sentences
        are tagged in windows (nerserve.tagger.windows), so that no sequence is longer
        than the network handles well, and the windows a slice at a time."""
        parts = windows([len(s) for s in sentences])
        pieces = cut(sentences, parts)
        tagged: list[ScoredTags] = []
        remaining = sum(len(piece) for piece in pieces)
        ranges = list(slices(parts))
        resident_before = resident_bytes() if len(ranges) > 1 else 0
        for i, (start, end) in enumerate(ranges):
            if i:
                give_back_memory_if_grown(resident_before, SLICE_GROWTH_BYTES)
            with turn(remaining) if turn else nullcontext():
                tagged += self.tagger.tag_scored(pieces[start:end])
            remaining -= sum(len(piece) for piece in pieces[start:end])
        return stitch_tagged(parts, tagged, len(sentences))


def slices(parts: list[Window], max_tokens: int = SLICE_TOKENS) -> Iterator[tuple[int, int]]:
    """[start, end) ranges of windows of at most max_tokens tokens in all (a
    window longer than that is a slice of its own)."""
    start, tokens = 0, 0
    for i, window in enumerate(parts):
        size = window.end - window.start
        if i > start and tokens + size > max_tokens:
            yield start, i
            start, tokens = i, 0
        tokens += size
    if start < len(parts):
        yield start, len(parts)


def align_data(data: dict[str, list[str]]) -> dict[str, str]:
    """Sequences of equal length as strings whose items line up in columns, as
    the original api_ner did: {"input": tokens, "output": tags} ->
    {"input": "I love Paris", "output": "O O    B-LOC"}."""
    widths = [max(len(item) for item in column) for column in zip(*data.values(), strict=True)]
    return {key: " ".join(item.ljust(w) for item, w in zip(seq, widths, strict=True)) for key, seq in data.items()}


def annotate(text: str, sentences: list[list[Token]], tagged: list[ScoredTags], min_score: float = 0.0) -> dict[str, Any]:
    """The result for one text, from its tokenized sentences and their scored
    tags; entities scored below min_score are left out of `entities` (not out of `tags`)."""
    tokens = [token for sentence in sentences for token in sentence]
    entities = []
    for sentence, sentence_tagged in zip(sentences, tagged, strict=True):
        # Spans are decoded per sentence: an entity never crosses a sentence boundary.
        for span in entity_spans(sentence_tagged.tags):
            score = float(sentence_tagged.scores[span.start])
            if math.isnan(score):
                # The scorer scores every entity of any IOB2 tag set (nerserve.tagger.marginals): a bug.
                raise ValueError(f"no score for the {span.type} entity at token {span.start}")
            score = round(score, SCORE_DIGITS)
            if score >= min_score:
                start, end = sentence[span.start].start, sentence[span.end - 1].end
                entities.append({"text": text[start:end], "type": span.type, "start": start, "end": end,
                                 "score": score})
    flat_tags = [tag for sentence_tagged in tagged for tag in sentence_tagged.tags]
    return {
        **align_data({"input": [t.text for t in tokens], "output": flat_tags}),
        "tokens": [{"text": t.text, "start": t.start, "end": t.end} for t in tokens],
        "tags": flat_tags,
        "entities": entities,
    }


def model_info(description: ModelDescription, directory: Path, backend: str) -> dict[str, Any]:
    """What the export wrote in meta.json (name, version, members, scores,
    training data, hyperparameters), and how this service runs the model."""
    return {
        **description.meta,
        "directory": directory.name,
        "backend": backend,
        "tags": list(description.tags),
        "entity_types": description.entity_types,
    }


def load_pipeline(model_dir: str | Path, backend: str = "onnx") -> Pipeline:
    """The pipeline of the model in `model_dir`, run by `backend` (nerserve.tagger.backends).
    ModelError (nerserve.tagger.files), naming the file, for a directory it cannot serve."""
    directory = Path(model_dir)
    description = describe(directory)  # as the API described it before the model loaded
    tagger = load_tagger(directory, backend)
    if list(tagger.vocab.tags) != list(description.tags):
        raise files.ModelError(f"{directory / files.VOCAB}: the tags changed since the service read them")
    return Pipeline(tagger, model_info(description, directory, backend))


# The models this process has loaded, by directory and backend. Every entry
# point loads through process_pipeline: the web worker (in its loader thread),
# get_model_api, tag.py's worker processes and Spark's Python workers (which
# Spark reuses from task to task), so that a process loads a model once.
_process_pipelines: dict[tuple[Path, str], Pipeline] = {}
_process_pipelines_lock = threading.Lock()


def process_pipeline(model_dir: str | Path, backend: str = "onnx") -> Pipeline:
    """This process's pipeline of the model in `model_dir` run by `backend`:
    loaded by the first call (load_pipeline), the same object after. A load
    that fails raises, and the next call tries again."""
    key = (Path(model_dir).resolve(), backend)
    with _process_pipelines_lock:  # two threads asking at once load it once
        if key not in _process_pipelines:
            _process_pipelines[key] = load_pipeline(model_dir, backend)
        return _process_pipelines[key]
