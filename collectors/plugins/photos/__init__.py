"""Photo libraries: Immich and PhotoPrism: up, version, assets by type, storage used."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from unity.collectors import appapi
from unity.sdk import Metric, Plugin, Sink


class PhotosConfig(appapi.AppConfig, frozen=True, forbid_unknown_fields=True):
    kind: Literal["immich", "photoprism"] = "immich"
    url: str = "http://127.0.0.1:2283"


class PhotosPlugin(Plugin):
    id = "photos"
    name = "Photo library"
    description = "Immich and PhotoPrism: up, version, photos and videos, storage used."
    category = "apps"
    tags = ("immich", "photoprism", "photos")
    Config = PhotosConfig
    metrics = (
        Metric("photos_up", "", "gauge", "1 when the API answered"),
        Metric("photos_assets", "", "gauge", "assets by type"),
        Metric("photos_usage_bytes", "bytes", "gauge", "storage the library uses (Immich)"),
        Metric("photos_albums", "", "gauge", "albums (PhotoPrism)"),
    )

    config: PhotosConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._version = ""

    def unavailable(self) -> str | None:
        return appapi.not_configured(self.config)

    def immich(self, sink: Sink) -> str:
        client = appapi.Client(
            "Immich", self.config, {"x-api-key": appapi.token(self.config, "Immich")}
        )
        version = client.json("/api/server/version")
        try:
            stats = client.json("/api/server/statistics")  # an admin's key: the whole server
            photos, videos = stats.get("photos"), stats.get("videos")
            sink.add("photos_usage_bytes", float(stats.get("usage") or 0))
        except appapi.AppError as exc:
            if exc.status != 403:
                raise
            stats = client.json("/api/assets/statistics")  # a user's key: that user's assets
            photos, videos = stats.get("images"), stats.get("videos")
        sink.add("photos_assets", float(photos or 0), {"type": "photo"})
        sink.add("photos_assets", float(videos or 0), {"type": "video"})
        if not isinstance(version, dict):
            return ""
        return f"{version.get('major')}.{version.get('minor')}.{version.get('patch')}"

    def photoprism(self, sink: Sink) -> str:
        headers = {"Authorization": f"Bearer {appapi.token(self.config, 'PhotoPrism')}"}
        client = appapi.Client("PhotoPrism", self.config, headers)
        status = client.json("/api/v1/status")
        if not isinstance(status, dict) or status.get("status") != "operational":
            raise appapi.AppError(f"PhotoPrism: status {status!r}")
        config: dict[str, Any] = client.json("/api/v1/config")
        count = config.get("count") or {}
        for kind, field in (("photo", "photos"), ("video", "videos"), ("live", "live")):
            sink.add("photos_assets", float(count.get(field) or 0), {"type": kind})
        sink.add("photos_albums", float(count.get("albums") or 0))
        return str(config.get("version", ""))

    def collect(self, sink: Sink) -> None:
        version = self.immich(sink) if self.config.kind == "immich" else self.photoprism(sink)
        sink.add("photos_up", 1.0)
        if version != self._version:
            self._version = version
            sink.event("photos_version", f"{self.config.kind} {version}", {"version": version})
