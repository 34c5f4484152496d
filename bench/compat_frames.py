"""CPU per streamed text delta of each compatible API's framing, measured apart from the rest
of a turn: Chat Completions chunks, Anthropic content_block_delta events, Responses
response.output_text.delta events (through the output builder, as a stream runs them),
legacy text_completion chunks; and, for scale, the same Responses event serialized from its
pydantic model, which is what the byte template replaces. Best of --rounds rounds of --n
deltas (process time: other processes on the machine do not count).

    python -m bench.compat_frames [--n 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import completions, responses_stream
from gateway.api.compat import openai as openai_compat
from gateway.api.schemas import openai_responses as answers
from gateway.turn import Delta

TEXT = "streamed "  # a typical token-sized delta


def per_delta(make: Callable[[], Callable[[str], object]], n: int, rounds: int) -> float:
    """CPU nanoseconds per delta, the best of `rounds` fresh streams of n deltas."""
    best = float("inf")
    for _ in range(rounds):
        frame = make()
        t0 = time.process_time()
        for _ in range(n):
            frame(TEXT)
        best = min(best, (time.process_time() - t0) / n * 1e9)
    return best


def chat_completions() -> Callable[[str], object]:
    frames = openai_compat.ChunkFrames("chatcmpl-1", 0, "gpt", include_usage=False)
    return frames.content


def anthropic_messages() -> Callable[[str], object]:
    blocks = anthropic_compat.Blocks()
    blocks.text("start")  # the text block is open, as mid-stream
    return blocks.text


def responses() -> Callable[[str], object]:
    output = responses_stream.Output("0" * 32, encrypted_reasoning=False)
    output.feed(Delta("start"))  # the item and its part are open, as mid-stream
    delta = Delta(TEXT)  # the turn makes the event anyway: only the framing is timed
    return lambda text: output.feed(delta)


def responses_from_model() -> Callable[[str], object]:
    sequence = iter(range(1 << 62))

    def frame(text: str) -> bytes:
        event = answers.OutputTextDelta(
            sequence_number=next(sequence),
            item_id="msg_" + "0" * 32 + "_0",
            output_index=0,
            content_index=0,
            delta=text,
        )
        return responses_stream._event(event)

    return frame


def legacy_completions() -> Callable[[str], object]:
    return completions.Frames("cmpl-1", 0, "gpt").text


CASES = {
    "chat.completion.chunk (template)": chat_completions,
    "anthropic content_block_delta (template)": anthropic_messages,
    "responses output_text.delta (Output.feed)": responses,
    "responses output_text.delta (pydantic model)": responses_from_model,
    "text_completion chunk (template)": legacy_completions,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="deltas per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"CPU per text delta, best of {args.rounds} rounds of {args.n} deltas of {TEXT!r}")
    for name, make in CASES.items():
        ns = per_delta(make, args.n, args.rounds)
        print(f"  {name:<46} {ns:8.0f} ns")


if __name__ == "__main__":
    main()
