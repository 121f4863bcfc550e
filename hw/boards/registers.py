"""The board's own registers: both MACs, MDIO and the host link (address space bit 15 of the link).

Stopgap until these blocks live in ``protocols/registers.py`` as
``BOARD_REGISTER_MAP`` (protocols must not import ``hw``): the host reads them
by name through ``host.boardnic.BoardNic(board_map=...)``. Every board uses
the same map (``mac1`` reads zero on a one-port board), so addresses do not
depend on the board.
"""

from hw.mac import mac_block
from hw.mac.mdio import MDIO
from protocols.hostlink import HOSTLINK
from protocols.registers import RegisterMap

BOARD_REGISTER_MAP = RegisterMap((mac_block("mac0"), mac_block("mac1"), MDIO, HOSTLINK))
