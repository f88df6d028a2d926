from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from eth_account import Account
from web3 import Web3

from chain.adapter import deploy_contracts
from core.errors import DomainError


class Command(BaseCommand):
    help = "Deploy the escrow (and DevUSD unless --token is given) to CHAIN_RPC_URL and record the addresses."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--token", help="Address of an existing 6-decimal ERC-20 (production).")
        parser.add_argument("--verifier", help="The verifier's address (default: the operator's).")
        parser.add_argument(
            "--deployer-key", default="", help="Owner's private key (default: CHAIN_DEPLOYER_KEY, then the operator's)."
        )

    def handle(self, *args: object, **options: Any) -> None:
        if not settings.CHAIN_RPC_URL or not settings.CHAIN_OPERATOR_KEY:
            raise CommandError("Set CHAIN_RPC_URL and CHAIN_OPERATOR_KEY.")
        w3 = Web3(Web3.HTTPProvider(settings.CHAIN_RPC_URL, request_kwargs={"timeout": 10}))
        operator = Account.from_key(settings.CHAIN_OPERATOR_KEY)
        deployer_key = str(options["deployer_key"] or settings.CHAIN_DEPLOYER_KEY or settings.CHAIN_OPERATOR_KEY)
        owner = Account.from_key(deployer_key)
        try:
            escrow, token = deploy_contracts(
                w3=w3,
                owner=owner,
                operator=operator.address,
                verifier=str(options["verifier"] or operator.address),
                token_address=options["token"] or None,
                unstake_delay=settings.CHAIN_UNSTAKE_DELAY_SECONDS,
                fee_bps=settings.PLATFORM_FEE_BPS,
                fee_recipient=settings.PLATFORM_FEE_RECIPIENT,
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"chain {w3.eth.chain_id}")
        self.stdout.write(f"CHAIN_TOKEN_ADDRESS={token.address}")
        self.stdout.write(f"CHAIN_ESCROW_ADDRESS={escrow.address}")
