"""The ledger's models, moved from the leases app as they are: the tables keep their names and
their rows, so this migration only tells Django where the models now live."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('leases', '0012_alter_ledgertransaction_kind'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='LedgerAccount',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('client_balance', 'Client balance'), ('provider_earnings', 'Provider earnings'), ('lease_escrow', 'Lease escrow'), ('external', 'External'), ('platform_fees', 'Platform fees')], max_length=24)),
                        ('name', models.CharField(blank=True, help_text='For external accounts: the source.', max_length=64)),
                        ('balance', models.BigIntegerField(default=0)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('lease', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='escrow_account', to='leases.lease')),
                        ('owner', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='ledger_accounts', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'leases_ledgeraccount',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='LedgerTransaction',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('idempotency_key', models.CharField(max_length=200, unique=True)),
                        ('kind', models.CharField(choices=[('deposit', 'Deposit'), ('withdrawal', 'Withdrawal'), ('lease_fund', 'Lease funded'), ('lease_top_up', 'Lease topped up'), ('lease_payout', 'Paid to provider'), ('lease_refund', 'Refunded to client'), ('compensation', 'Compensation for a failed GPU check')], max_length=24)),
                        ('memo', models.CharField(blank=True, max_length=200)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('lease', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='transactions', to='leases.lease')),
                    ],
                    options={
                        'db_table': 'leases_ledgertransaction',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='LedgerEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('amount', models.BigIntegerField()),
                        ('balance_after', models.BigIntegerField()),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('account', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='entries', to='ledger.ledgeraccount')),
                        ('transaction', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='entries', to='ledger.ledgertransaction')),
                    ],
                    options={
                        'db_table': 'leases_ledgerentry',
                        'ordering': ['id'],
                    },
                ),
                migrations.AddConstraint(
                    model_name='ledgeraccount',
                    constraint=models.UniqueConstraint(condition=models.Q(('kind__in', ['client_balance', 'provider_earnings'])), fields=('kind', 'owner'), name='ledger_one_user_account_per_kind'),
                ),
                migrations.AddConstraint(
                    model_name='ledgeraccount',
                    constraint=models.UniqueConstraint(condition=models.Q(('kind', 'external')), fields=('name',), name='ledger_unique_external_name'),
                ),
                migrations.AddConstraint(
                    model_name='ledgeraccount',
                    constraint=models.UniqueConstraint(condition=models.Q(('kind', 'platform_fees')), fields=('kind',), name='ledger_one_platform_fees_account'),
                ),
                migrations.AddConstraint(
                    model_name='ledgeraccount',
                    constraint=models.CheckConstraint(condition=models.Q(('kind', 'external'), ('balance__gte', 0), _connector='OR'), name='ledger_internal_balance_nonnegative'),
                ),
                migrations.AddConstraint(
                    model_name='ledgeraccount',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('kind', 'lease_escrow'), ('lease__isnull', False)), models.Q(('kind__in', ['client_balance', 'provider_earnings']), ('owner__isnull', False)), models.Q(('kind', 'external'), models.Q(('name', ''), _negated=True)), models.Q(('kind', 'platform_fees'), ('owner__isnull', True), ('lease__isnull', True)), _connector='OR'), name='ledger_account_kind_shape'),
                ),
                migrations.AddIndex(
                    model_name='ledgerentry',
                    index=models.Index(fields=['account', '-id'], name='ledger_entry_account'),
                ),
                migrations.AddConstraint(
                    model_name='ledgerentry',
                    constraint=models.CheckConstraint(condition=models.Q(('amount', 0), _negated=True), name='ledger_entry_nonzero'),
                ),
            ],
            database_operations=[],
        ),
    ]
