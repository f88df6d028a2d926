# pragma version ~=0.4.3
"""
@notice A hostile ERC-20 for tests: when armed, its `transfer` calls back into the escrow
        (withdraw again, or claim again) before returning.
"""

interface Escrow:
    def withdraw(amount: uint256): nonpayable
    def claim() -> uint256: nonpayable

balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
target: public(address)
armed: public(bool)
reentry: public(uint8)  # 1: withdraw, 2: claim


@external
def mint(to: address, amount: uint256):
    self.balanceOf[to] += amount


@external
def arm(target_: address, reentry_: uint8):
    self.target = target_
    self.reentry = reentry_
    self.armed = True


@external
def disarm():
    self.armed = False


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    return True


@external
def transfer(to: address, amount: uint256) -> bool:
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[to] += amount
    if self.armed:
        self.armed = False
        if self.reentry == 1:
            extcall Escrow(self.target).withdraw(amount)
        else:
            extcall Escrow(self.target).claim()
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    self.allowance[owner][msg.sender] -= amount
    self.balanceOf[owner] -= amount
    self.balanceOf[to] += amount
    return True
