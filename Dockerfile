# syntax=docker/dockerfile:1.7
# Three images from one codebase:
#   --target api         the stateless HTTP API (no GPU, no TensorFlow native library; its worker threads
#                        run summaries, preflights and predictions on tfjs' wasm backend with the oneDNN kernels)
#   --target worker-cpu  the training worker for hosts without a GPU: wasm backend + the oneDNN kernels addon
#   --target worker-gpu  the training worker on CUDA 11 + cuDNN 8 with @tensorflow/tfjs-node-gpu
# tfjs-node-gpu 4.22 downloads libtensorflow 2.9.1 (built for CUDA 11.2 / cuDNN 8.1) at install time;
# CUDA 11.x minor-version compatibility lets it run on the 11.8 runtime below.

# Node 22 LTS: Node 20 is past its end of life (the development machines still run 20).
FROM node:22-bookworm-slim AS node

FROM node AS deps
RUN apt-get update && apt-get install -y --no-install-recommends libdnnl-dev g++ make python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json binding.gyp ./
COPY scripts/build-native.mjs ./scripts/
COPY engine/native/src ./engine/native/src
# Install scripts off: tfjs-node's would download libtensorflow, and sharp and esbuild ship their
# binaries as (optional) packages. The native tfjs backends are removed; the oneDNN addon is built.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && rm -rf node_modules/@tensorflow/tfjs-node node_modules/@tensorflow/tfjs-node-gpu \
    && npm run build:native \
    && test -f build/Release/onednn_kernels.node

# Debian's oneDNN (and the OpenMP runtime it threads with) for the addon.
FROM node AS cpu
RUN apt-get update && apt-get install -y --no-install-recommends libdnnl2 libgomp1 \
    && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production DATA_DIR=/data ARTIFACTS_DIR=/artifacts
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=deps /app/build/Release/onednn_kernels.node ./build/Release/
COPY package.json tsconfig.json ./
COPY schemas ./schemas
COPY common ./common
COPY engine ./engine
# The images run as uid 1000 and own the volume mount points, so shared volumes stay writable.
RUN mkdir -p /data /artifacts && chown node:node /data /artifacts
USER node

FROM cpu AS worker-cpu
ENV TFJS_BACKEND=wasm
COPY workers ./workers
STOPSIGNAL SIGTERM
CMD ["node", "--import", "tsx", "workers/training/main.ts"]

FROM cpu AS api
# Listening beyond loopback needs ADMIN_API_KEY (the API refuses to start without it).
ENV HOST=0.0.0.0 PORT=8080
COPY services ./services
# The dashboard at /, bundled by esbuild when the API starts.
COPY dashboard ./dashboard
# `npx retrain keys create --owner NAME` runs here, beside the API's environment.
COPY bin ./bin
COPY cli ./cli
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+process.env.PORT+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "--import", "tsx", "services/api/main.ts"]

FROM nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04 AS gpu-base
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm

FROM gpu-base AS gpu-deps
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Only tfjs-node-gpu runs its install script (libtensorflow 2.9.1 for CUDA 11.2 and its binding).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && rm -rf node_modules/@tensorflow/tfjs-node \
    && npm rebuild @tensorflow/tfjs-node-gpu

FROM gpu-base AS worker-gpu
ENV NODE_ENV=production DATA_DIR=/data ARTIFACTS_DIR=/artifacts TFJS_BACKEND=node-gpu \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
COPY --from=gpu-deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY schemas ./schemas
COPY common ./common
COPY engine ./engine
COPY workers ./workers
RUN useradd --uid 1000 --create-home app && mkdir -p /data /artifacts && chown app:app /data /artifacts
USER app
# SIGTERM lets the worker hand its job back; the next worker resumes it from the last checkpoint.
STOPSIGNAL SIGTERM
CMD ["node", "--import", "tsx", "workers/training/main.ts"]
