# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One exception hierarchy for every agbotkit.dr module.

Helpers raise these; each module's main() hands its work to _module.run_module, which catches AgbotDrError once
and turns it into fail_json(msg=str(err), **result, **err.details). A message always says what failed and what to
do next. Library errors (psycopg, botocore, OSError) are turned into these where they happen.
"""

from __future__ import annotations


class AgbotDrError(Exception):
    """Base of every error our modules report."""

    def __init__(self, msg: str, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        return self.msg

    def full_message(self) -> str:
        """The message fail_json reports (subclasses may add the cause, as AwsApiError does)."""
        return self.msg


# --- PostgreSQL ---------------------------------------------------------------------------

class MissingLibraryError(AgbotDrError):
    """A Python library the module needs is not installed where it runs."""


class DatabaseConnectionError(AgbotDrError):
    """Could not connect to PostgreSQL."""


class DatabaseQueryError(AgbotDrError):
    """A query failed."""


class ManifestError(AgbotDrError):
    """A manifest could not be read, parsed or written."""


class IntegrityMismatchError(AgbotDrError):
    """The database does not match its manifest or is corrupt."""


class ToolError(AgbotDrError):
    """pg_dump or pg_restore failed or is missing."""


# --- pgBackRest (physical backups and restores) -----------------------------------------------

class PgBackRestError(AgbotDrError):
    """pgBackRest failed, is missing, or its repository cannot be trusted."""


class TargetBeforeBackupsError(PgBackRestError):
    """The restore target lies before the oldest backup set that could reach it."""


# --- kill switch --------------------------------------------------------------------------

class KillSwitchError(AgbotDrError):
    """Talking to the bot's kill-switch API failed."""


class KillSwitchAuthError(KillSwitchError):
    """The bot rejected the token (401/403); never retried."""


class KillSwitchServerError(KillSwitchError):
    """The bot answered 5xx after every retry."""


class KillSwitchTimeoutError(KillSwitchError):
    """The bot did not answer in time after every retry."""


class KillSwitchUnreachableError(KillSwitchError):
    """Connection refused / no route / DNS failure after every retry."""


class KillSwitchProtocolError(KillSwitchError):
    """The bot answered something that is not the documented contract."""


class HaltNotConfirmedError(KillSwitchError):
    """The bot says halted, but the database shows writes continuing (or the state never flips)."""


class ResumeNotConfirmedError(KillSwitchError):
    """The bot says trading, but no new rows appeared within the settle period."""


# --- RTDS feed -----------------------------------------------------------------------------

class RtdsProbeError(AgbotDrError):
    """The probe could not prove the feed healthy; details carry whatever was measured."""


class RtdsConnectError(RtdsProbeError):
    """The websocket could not be opened (refused, handshake rejected, timeout)."""


class RtdsStallError(RtdsProbeError):
    """The feed stopped sending ticks."""


class RtdsGapError(RtdsProbeError):
    """More sequence numbers were missing than allowed."""


class RtdsLatencyError(RtdsProbeError):
    """Tick latency above the allowed maximum."""


# --- Security breach -----------------------------------------------------------------------

class RotationError(AgbotDrError):
    """A state the rotation cannot resolve on its own; the message says what to do."""


class ApprovalError(AgbotDrError):
    """A refused approval; the message says what to do next. The module reports it with approved=false."""

    def __init__(self, msg: str, **details):
        details.setdefault("approved", False)
        super().__init__(msg, **details)


# --- Runbook ------------------------------------------------------------------------------

class RunStateError(AgbotDrError):
    """The run state file of a scenario cannot be read, understood or written."""


# --- AWS ----------------------------------------------------------------------------------

class AwsApiError(AgbotDrError):
    """An AWS API call failed. ``exception`` is the botocore error: main() reports it through amazon.aws's
    fail_json_aws (message "<msg>: <AWS message>", the AWS error code, response metadata, SDK versions)."""

    def __init__(self, msg: str, exception: BaseException | None = None, **details):
        super().__init__(msg, **details)
        self.exception = exception

    def full_message(self) -> str:
        return "%s: %s" % (self.msg, self.exception) if self.exception is not None else self.msg


# --- S3 transfers (s3_transfer) -------------------------------------------------------------

class TransferError(AgbotDrError):
    """A file could not be uploaded to or downloaded from S3; the message names the key and what to do."""


class UnsafeNameError(TransferError):
    """A file name or key that would leave its folder or prefix (absolute, '..', a symlink out): refused."""


# --- Kubernetes -----------------------------------------------------------------------------

class KubernetesReadError(AgbotDrError):
    """The Kubernetes API could not be reached or read, or it does not serve a kind asked for."""
