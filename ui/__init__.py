"""The clinician interface (Gradio) over medmm: one patient at a time. Research use only; not a medical device.

Importing the package turns Gradio's analytics off for the process before any module imports
Gradio: the interface must never contact outside hosts.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
