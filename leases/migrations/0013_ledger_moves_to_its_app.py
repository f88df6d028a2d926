"""The ledger's models move to the ledger app (``ledger.0001_initial``): their tables, rows and
constraints stay as they are; only Django's idea of where the models live changes, and with it
their content types (and so their permissions)."""

from django.db import migrations

MOVED = ["ledgeraccount", "ledgertransaction", "ledgerentry"]


def move_content_types(apps, schema_editor, source="leases", target="ledger"):  # type: ignore[no-untyped-def]
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MOVED:
        if not ContentType.objects.using(db).filter(app_label=target, model=model).exists():
            ContentType.objects.using(db).filter(app_label=source, model=model).update(app_label=target)


def move_content_types_back(apps, schema_editor):  # type: ignore[no-untyped-def]
    move_content_types(apps, schema_editor, source="ledger", target="leases")


class Migration(migrations.Migration):
    dependencies = [
        ("leases", "0012_alter_ledgertransaction_kind"),
        ("ledger", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="ledgerentry", name="account"),
                migrations.RemoveField(model_name="ledgerentry", name="transaction"),
                migrations.RemoveField(model_name="ledgertransaction", name="lease"),
                migrations.DeleteModel(name="LedgerAccount"),
                migrations.DeleteModel(name="LedgerEntry"),
                migrations.DeleteModel(name="LedgerTransaction"),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
