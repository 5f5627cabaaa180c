"""An OpenAI-compatible API simulator: files, batches, chat, responses, embeddings, models.

It behaves like the real API (validation, lifecycle, error shapes, rate-limit headers,
429s, shuffled output, expiry with partial results) so code that works against it works
against OpenAI. It imports nothing from the rest of batchyard and builds its JSON from the
openai SDK's own types. See docs/simulator.md.
"""

from batchyard.simulator.app import create_app
from batchyard.simulator.config import SimConfig, load_config
from batchyard.simulator.state import SimState

__all__ = ["SimConfig", "SimState", "create_app", "load_config"]
