# pragma version ~=0.4.3
"""
@title DevUSD
@notice A 6-decimal stablecoin-style ERC-20 for development chains and tests. Production
        points the escrow at a real token's address instead.
@dev Built from snekmate's audited ERC-20 and Ownable modules; the deployer is the owner and
     the first minter.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: erc20.__interface__


@deploy
@payable
def __init__(name_: String[25], symbol_: String[5]):
    ownable.__init__()
    erc20.__init__(name_, symbol_, 6, name_, "1")
