import type { ArtifactStoreSettings } from '../schemas/config.js';
import { LocalArtifactStore, type ArtifactStore } from './artifact-store.js';

/** The store the settings name: the local folder unless ARTIFACT_STORE says s3://. */
export async function openArtifactStore(settings: ArtifactStoreSettings): Promise<ArtifactStore> {
  if (!settings.ARTIFACT_STORE) return new LocalArtifactStore(settings.ARTIFACTS_DIR);
  // Loaded only when configured: the SDK is large.
  const { S3ArtifactStore } = await import('./s3-artifact-store.js');
  return S3ArtifactStore.fromUrl(settings.ARTIFACT_STORE, { endpoint: settings.S3_ENDPOINT, region: settings.S3_REGION });
}
