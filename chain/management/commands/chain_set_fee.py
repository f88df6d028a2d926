from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from eth_account import Account
from web3 import Web3

from chain.adapter import escrow_client, set_platform_fee
from core.errors import DomainError


class Command(BaseCommand):
    help = (
        "Set the escrow's platform fee (basis points of each settlement, for leases opened from now on) "
        "and its recipient, signing as the escrow's owner."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bps", type=int, help="0 to 2000 (20 %%).")
        parser.add_argument(
            "--recipient", default="", help="Where fees go (default: PLATFORM_FEE_RECIPIENT, then the owner)."
        )
        parser.add_argument("--owner-key", default="", help="The owner's private key (default: CHAIN_DEPLOYER_KEY).")

    def handle(self, *args: object, **options: Any) -> None:
        bps = int(options["bps"])
        if not 0 <= bps <= 2000:
            raise CommandError("The fee is from 0 to 2000 basis points.")
        key = str(options["owner_key"] or settings.CHAIN_DEPLOYER_KEY)
        if not key:
            raise CommandError("Give the escrow owner's key (--owner-key or CHAIN_DEPLOYER_KEY).")
        owner = Account.from_key(key)
        recipient = str(options["recipient"] or settings.PLATFORM_FEE_RECIPIENT or owner.address)
        if not Web3.is_address(recipient):
            raise CommandError(f"{recipient!r} is not an address.")
        try:
            client = escrow_client(start=False)
            set_platform_fee(w3=client.w3, owner=owner, escrow=client.escrow, fee_bps=bps, recipient=recipient)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Platform fee {bps} bps to {Web3.to_checksum_address(recipient)} for new leases.")
