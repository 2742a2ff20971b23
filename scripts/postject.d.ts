// postject (npm) ships no type declarations; this is the part of its API scripts/package.ts uses.
declare module 'postject' {
  export function inject(
    file: string,
    resourceName: string,
    data: Buffer,
    opts: { sentinelFuse: string; overwrite?: boolean },
  ): Promise<void>;
}
