"""Library log lines kept off the user's terminal: this project reports what a user needs itself, one line each.

`quiet_library_logs()` runs from modules/__init__.py and pipelines/__init__.py, before anything imports diffusers.
"""

import logging
import os

# Loggers raised to ERROR before their libraries load (the libraries never set these levels themselves):
# - bitsandbytes (imported by diffusers when installed): its CPU backend warns about a 4-bit kernel this project
#   never uses ("Failed to load CPU gemm_4bit_forward ...").
# - kernels (which bitsandbytes asks for that kernel): `logger.warning` in kernels._internals.hf_hub writes
#   "Skipping publisher trust check ... offline mode" (kernels 0.19) to stderr through logging's last resort.
QUIET_LOGGERS = ("bitsandbytes", "kernels")


def quiet_library_logs() -> None:
    """Warnings and info of kernels, bitsandbytes, transformers and diffusers to ERROR (errors still show).

    transformers and diffusers set their own level when first imported, so theirs is set through their own logging
    modules; TRANSFORMERS_VERBOSITY or DIFFUSERS_VERBOSITY, when set, still wins (to see their warnings again).
    Python warnings (warnings.warn) are left alone. Calling it again is harmless.
    """
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    if not os.environ.get("TRANSFORMERS_VERBOSITY"):
        transformers_logging.set_verbosity_error()
    if not os.environ.get("DIFFUSERS_VERBOSITY"):
        diffusers_logging.set_verbosity_error()
