"""What makes text more than one line, for the fields we keep and the headers we send."""

import re

# ASCII and C1 controls (NEL, U+0085, among them) and Unicode's line and paragraph
# separators: each ends a line for some reader, parser or mail system, or hides in one.
NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The same, a run at a time (a header's CR LF becomes one space, not two).
LINE_BREAKING_RUNS = re.compile(NOT_ONE_LINE.pattern + "+")
