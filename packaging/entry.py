"""Frozen entry point: `dclip-desktop [--self-test] [IMAGE]`."""

import sys

from dclip_desktop.gui.app import main

if __name__ == "__main__":
    sys.exit(main())
