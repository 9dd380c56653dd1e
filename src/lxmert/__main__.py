import sys

from lxmert.cli import main

sys.exit(main())
