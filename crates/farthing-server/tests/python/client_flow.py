"""A small "pay per AI generation" integration written against the Python client that
openapi-python-client generated from farthing's own /openapi.json: customer by external id,
top-up, charges until the balance is short (402), refund, statement. Every answer is parsed by
the generated models, so a response that contradicts the document fails here.

Run by crates/farthing-server/tests/it/python_client.rs with BASE and KEY in the environment
and the generated package importable as `farthing_client`.
"""

import os
import sys

from farthing_client import AuthenticatedClient
from farthing_client.api.charges import create_charge
from farthing_client.api.customers import create_customer, customer_statement, list_customers
from farthing_client.api.invoices import create_invoice
from farthing_client.api.refunds import create_refund
from farthing_client.api.sandbox import sandbox_pay_invoice
from farthing_client.models import (
    Charge,
    CreateCharge,
    CreateCustomer,
    CreateInvoice,
    CreateRefund,
    Customer,
    CustomerList,
    Error,
    Invoice,
    Refund,
    RailName,
    SandboxPay,
    BalanceEntryList,
)


def expect(value, kind, what):
    if not isinstance(value, kind):
        sys.exit(f"{what}: expected {kind.__name__}, got {value!r}")
    return value


client = AuthenticatedClient(base_url=os.environ["BASE"], token=os.environ["KEY"])

# The customer, created once and then found by our own reference.
created = expect(
    create_customer.sync(client=client, body=CreateCustomer(external_id="tg:777")),
    Customer,
    "create customer",
)
found = expect(list_customers.sync(client=client, external_id="tg:777"), CustomerList, "lookup")
assert [c.id for c in found.data] == [created.id], found
customer = created.id

# A top-up of 100 Stars, paid by the sandbox exactly as a real rail would.
top_up = expect(
    create_invoice.sync(
        client=client,
        body=CreateInvoice(currency="XTR", amount=100, customer=customer, top_up=True),
    ),
    Invoice,
    "top-up invoice",
)
paid = expect(
    sandbox_pay_invoice.sync(top_up.id, client=client, body=SandboxPay(rail=RailName.SANDBOX)),
    Invoice,
    "sandbox payment",
)
assert paid.status.value == "paid", paid

# Generations at 30 Stars until the balance is short: the 402 says what is left.
charges = []
while True:
    answer = create_charge.sync(
        client=client,
        body=CreateCharge(customer=customer, amount=30, currency="XTR", description="1 generation"),
    )
    if isinstance(answer, Error):
        detail = answer.error
        assert detail.code == "insufficient_funds", detail
        assert (detail.available, detail.requested) == (10, 30), detail
        break
    charges.append(expect(answer, Charge, "charge"))
assert len(charges) == 3, charges

# The last generation failed on our side: refund it.
refund = expect(
    create_refund.sync(client=client, body=CreateRefund(charge=charges[-1].id)),
    Refund,
    "refund",
)
assert refund.amount == 30 and refund.destination.value == "balance", refund

statement = expect(
    customer_statement.sync(customer, client=client, limit=10),
    BalanceEntryList,
    "statement",
)
rows = [(e.type_.value, e.amount, e.balance_after) for e in statement.data]
assert rows == [
    ("refund", 30, 40),
    ("charge", -30, 10),
    ("charge", -30, 40),
    ("charge", -30, 70),
    ("top_up", 100, 100),
], rows
assert statement.data[-1].source == top_up.id, statement.data[-1]
print("python client flow ok:", rows)
