"""S3 and Redshift destinations, with keys from an Amazon Web Services connection (``aws``).

Field meanings are the Amazon provider's: login = access key id, password = secret access key (or extras
``aws_access_key_id``/``aws_secret_access_key`` when login is empty), extra ``region_name`` and
``endpoint_url`` (``service_config.s3.endpoint_url`` wins for S3). See
https://airflow.apache.org/docs/apache-airflow-providers-amazon/stable/connections/aws.html.

PostHog stores static keys: its S3 and Redshift configs have no field for a role to assume or a session
token, so a connection that relies on ``role_arn``, ``aws_session_token`` or the worker's own identity
(no keys) is refused with an error rather than handing PostHog a different identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.destinations.base import (
    FILE_FORMATS,
    DestinationBuilder,
    check_compression,
    choice,
    extra_field,
    get_connection,
    missing,
    optional_bool,
    optional_int,
    optional_str,
    require_str,
    secret,
    sql_login_config,
)
from airflow_provider_posthog.exceptions import PostHogConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

REDSHIFT_MODES: tuple[str, ...] = ("INSERT", "COPY")
REDSHIFT_PROPERTIES_DATA_TYPES: tuple[str, ...] = ("varchar", "super")


def aws_keys(conn_id: str, arg: str) -> tuple[dict[str, str], Connection]:
    """``{"aws_access_key_id", "aws_secret_access_key"}`` of an ``aws`` connection, both masked."""
    conn = get_connection(conn_id, arg)
    for unsupported, why in (
        ("role_arn", "PostHog cannot assume a role: give the connection the keys PostHog should use"),
        ("aws_session_token", "PostHog cannot use temporary credentials: use long-lived keys"),
    ):
        if extra_field(conn, unsupported):
            raise PostHogConfigError(f"Connection {arg}={conn_id!r} sets extra {unsupported!r}; {why}.")
    if conn.login:
        key_id, key = conn.login, conn.password
        key_field = "password (AWS secret access key)"
    else:
        key_id, key = extra_field(conn, "aws_access_key_id"), extra_field(conn, "aws_secret_access_key")
        key_field = "extra 'aws_secret_access_key'"
    if not key_id:
        raise missing(conn_id, arg, "login (AWS access key id); PostHog needs static keys")
    if not key:
        raise missing(conn_id, arg, key_field)
    return {"aws_access_key_id": secret(str(key_id)), "aws_secret_access_key": secret(str(key))}, conn


class S3Destination(DestinationBuilder):
    """PostHog's ``S3`` destination: bucket, prefix and format here, keys from an ``aws`` connection.

    :param bucket_name: the bucket (templated).
    :param prefix: key prefix of the exported files, e.g. ``"posthog/{{ ds }}/"`` (templated; PostHog
        requires it, ``""`` writes at the bucket root).
    :param region: the bucket's region (templated); default: the connection's extra ``region_name``.
    :param aws_conn_id: Airflow ``aws`` connection holding the keys (templated).
    :param file_format: ``JSONLines`` (PostHog's default) or ``Parquet``.
    :param compression: ``gzip``/``brotli`` for JSONLines; ``zstd``/``lz4``/``snappy``/``gzip``/``brotli``
        for Parquet; ``None`` for none.
    :param encryption: S3 server-side encryption, e.g. ``AES256`` or ``aws:kms``.
    :param kms_key_id: the KMS key for ``aws:kms`` (templated).
    :param endpoint_url: an S3-compatible endpoint (templated); default: the connection's
        ``service_config.s3.endpoint_url`` or ``endpoint_url`` extra, else AWS.
    :param max_file_size_mb: split files above this size.
    :param use_virtual_style_addressing: virtual-hosted-style URLs for S3-compatible stores.
    """

    destination_type = "S3"
    template_fields = ("bucket_name", "prefix", "region", "aws_conn_id", "kms_key_id", "endpoint_url")
    _settings = (
        "bucket_name",
        "prefix",
        "region",
        "aws_conn_id",
        "file_format",
        "compression",
        "encryption",
        "kms_key_id",
        "endpoint_url",
        "max_file_size_mb",
        "use_virtual_style_addressing",
    )

    def __init__(
        self,
        *,
        bucket_name: str,
        prefix: str,
        region: str | None = None,
        aws_conn_id: str = "aws_default",
        file_format: str | None = None,
        compression: str | None = None,
        encryption: str | None = None,
        kms_key_id: str | None = None,
        endpoint_url: str | None = None,
        max_file_size_mb: int | None = None,
        use_virtual_style_addressing: bool | None = None,
        include_events: list[str] | None = None,
        exclude_events: list[str] | None = None,
    ) -> None:
        super().__init__(include_events=include_events, exclude_events=exclude_events)
        self.bucket_name = bucket_name
        self.prefix = prefix
        self.region = region
        self.aws_conn_id = aws_conn_id
        self.file_format = file_format
        self.compression = compression
        self.encryption = encryption
        self.kms_key_id = kms_key_id
        self.endpoint_url = endpoint_url
        self.max_file_size_mb = max_file_size_mb
        self.use_virtual_style_addressing = use_virtual_style_addressing
        self._check()

    def _check(self) -> None:
        super()._check()
        require_str(self.bucket_name, "bucket_name")
        if not isinstance(self.prefix, str):
            raise PostHogConfigError(
                f"prefix is required: a string, '' for the bucket root (got {self.prefix!r})."
            )
        optional_str(self.region, "region")
        require_str(self.aws_conn_id, "aws_conn_id")
        choice(self.file_format, "file_format", FILE_FORMATS)
        check_compression(self.file_format, self.compression)
        optional_str(self.encryption, "encryption")
        optional_str(self.kms_key_id, "kms_key_id")
        optional_str(self.endpoint_url, "endpoint_url")
        optional_int(self.max_file_size_mb, "max_file_size_mb")
        optional_bool(self.use_virtual_style_addressing, "use_virtual_style_addressing")

    def _config(self) -> dict[str, Any]:
        keys, conn = aws_keys(self.aws_conn_id, "aws_conn_id")
        region = self.region or extra_field(conn, "region_name")
        if not region:
            raise PostHogConfigError(
                f"region is required: pass region= or set extra 'region_name' on connection "
                f"aws_conn_id={self.aws_conn_id!r}."
            )
        service_config = extra_field(conn, "service_config")
        s3_config = service_config.get("s3") if isinstance(service_config, dict) else None
        endpoint_url = (
            self.endpoint_url
            or (s3_config.get("endpoint_url") if isinstance(s3_config, dict) else None)
            or extra_field(conn, "endpoint_url")
        )
        config: dict[str, Any] = {"bucket_name": self.bucket_name, "region": region, "prefix": self.prefix}
        config.update(keys)
        optional = {
            "file_format": self.file_format,
            "compression": self.compression,
            "encryption": self.encryption,
            "kms_key_id": self.kms_key_id,
            "endpoint_url": endpoint_url,
            "max_file_size_mb": optional_int(self.max_file_size_mb, "max_file_size_mb"),
            "use_virtual_style_addressing": self.use_virtual_style_addressing,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        return config


class RedshiftDestination(DestinationBuilder):
    """PostHog's ``Redshift`` destination, from a ``redshift`` connection of the Amazon provider.

    The connection gives host, port, login, password and, in its schema field, the database (the Amazon
    provider's meanings). IAM authentication (extra ``iam``) cannot be handed to PostHog: it needs a password.

    :param schema: the Redshift schema (PostHog's default ``public``; templated).
    :param table_name: the table (PostHog's default ``events``; templated).
    :param database: overrides the connection's database (templated).
    :param redshift_conn_id: Airflow ``redshift`` connection (templated).
    :param properties_data_type: ``varchar`` (PostHog's default) or ``super``.
    :param mode: ``INSERT`` (PostHog's default) or ``COPY`` (through an S3 bucket, below).
    :param copy_s3_bucket: COPY's staging bucket (templated).
    :param copy_s3_key_prefix: key prefix in that bucket (templated).
    :param copy_region_name: the bucket's region; default: ``copy_aws_conn_id``'s extra ``region_name``.
    :param copy_aws_conn_id: ``aws`` connection whose keys PostHog writes the staging files with.
    :param copy_iam_role_arn: role Redshift assumes to read the files (PostHog's ``authorization``); without
        it Redshift reads with the same keys.
    """

    destination_type = "Redshift"
    template_fields = (
        "schema",
        "table_name",
        "database",
        "redshift_conn_id",
        "copy_s3_bucket",
        "copy_s3_key_prefix",
        "copy_region_name",
        "copy_aws_conn_id",
        "copy_iam_role_arn",
    )
    _settings = (
        "schema",
        "table_name",
        "database",
        "redshift_conn_id",
        "properties_data_type",
        "mode",
        "copy_s3_bucket",
        "copy_s3_key_prefix",
        "copy_region_name",
        "copy_aws_conn_id",
        "copy_iam_role_arn",
    )

    def __init__(
        self,
        *,
        schema: str | None = None,
        table_name: str | None = None,
        database: str | None = None,
        redshift_conn_id: str = "redshift_default",
        properties_data_type: str | None = None,
        mode: str | None = None,
        copy_s3_bucket: str | None = None,
        copy_s3_key_prefix: str | None = None,
        copy_region_name: str | None = None,
        copy_aws_conn_id: str | None = None,
        copy_iam_role_arn: str | None = None,
        include_events: list[str] | None = None,
        exclude_events: list[str] | None = None,
    ) -> None:
        super().__init__(include_events=include_events, exclude_events=exclude_events)
        self.schema = schema
        self.table_name = table_name
        self.database = database
        self.redshift_conn_id = redshift_conn_id
        self.properties_data_type = properties_data_type
        self.mode = mode
        self.copy_s3_bucket = copy_s3_bucket
        self.copy_s3_key_prefix = copy_s3_key_prefix
        self.copy_region_name = copy_region_name
        self.copy_aws_conn_id = copy_aws_conn_id
        self.copy_iam_role_arn = copy_iam_role_arn
        self._check()

    def _check(self) -> None:
        super()._check()
        for name in ("schema", "table_name", "database", "copy_s3_key_prefix", "copy_region_name"):
            optional_str(getattr(self, name), name)
        require_str(self.redshift_conn_id, "redshift_conn_id")
        choice(self.properties_data_type, "properties_data_type", REDSHIFT_PROPERTIES_DATA_TYPES)
        choice(self.mode, "mode", REDSHIFT_MODES)
        copy_args = ("copy_s3_bucket", "copy_s3_key_prefix", "copy_region_name", "copy_aws_conn_id")
        if self.mode == "COPY":
            require_str(self.copy_s3_bucket, "copy_s3_bucket (mode='COPY')")
            require_str(self.copy_aws_conn_id, "copy_aws_conn_id (mode='COPY')")
            optional_str(self.copy_iam_role_arn, "copy_iam_role_arn")
        elif any(getattr(self, n) is not None for n in (*copy_args, "copy_iam_role_arn")):
            raise PostHogConfigError("copy_* arguments need mode='COPY'.")

    def _config(self) -> dict[str, Any]:
        arg, conn_id = "redshift_conn_id", self.redshift_conn_id
        conn = get_connection(conn_id, arg)
        hint = "; IAM authentication cannot be handed to PostHog" if extra_field(conn, "iam") else ""
        config = sql_login_config(conn, conn_id, arg, self.database, password_hint=hint)
        optional = {
            "schema": self.schema,
            "table_name": self.table_name,
            "properties_data_type": self.properties_data_type,
            "mode": self.mode,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        if self.mode == "COPY":
            config["copy_inputs"] = self._copy_inputs()
        return config

    def _copy_inputs(self) -> dict[str, Any]:
        arg, conn_id = "copy_aws_conn_id", str(self.copy_aws_conn_id)
        keys, conn = aws_keys(conn_id, arg)
        region = self.copy_region_name or extra_field(conn, "region_name")
        if not region:
            raise PostHogConfigError(
                f"copy_region_name is required: pass it or set extra 'region_name' on connection "
                f"{arg}={conn_id!r}."
            )
        inputs: dict[str, Any] = {"s3_bucket": self.copy_s3_bucket, "region_name": region}
        if self.copy_s3_key_prefix is not None:
            inputs["s3_key_prefix"] = self.copy_s3_key_prefix
        inputs["authorization"] = self.copy_iam_role_arn or dict(keys)
        inputs["bucket_credentials"] = dict(keys)
        return inputs
