"""Storage tiers and indexes for wide ranges (issue 18).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
