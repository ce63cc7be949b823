"""nntui's terminal side: the Textual app and the click CLI."""

import os

# Textual paints a changed screen on the next tick of a 1/FPS timer, so at its default 60 a
# key's frame waits up to 16 ms for the tick. The app paints only when something changed, so a
# faster tick costs nothing while idle (tools/bench.py, tutorial Net: backward's p95 63-66 ms
# at 60, 43-55 ms at 240). Set before Textual is imported, which reads it once; a user's own
# TEXTUAL_FPS wins.
os.environ.setdefault("TEXTUAL_FPS", "240")
# The views switch tabs after most phases, and Textual slides the tab strip's underline to the
# new tab over 0.3 s, a frame at every tick: 12 frames a key instead of 1.6, and the event
# loop's CPU per key went from 36 to 76 ms on the tutorial Net (more than a held key's repeat
# interval leaves). No animation, then: the underline jumps. A user's own TEXTUAL_ANIMATIONS
# wins.
os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
