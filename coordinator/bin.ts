#!/usr/bin/env -S node --max-semi-space-size=2
import { dropIpServernameWarning, survivePipeClose } from '../shared/process.js';
import { cli } from './cli.js';

dropIpServernameWarning();
survivePipeClose();
process.exitCode = await cli(process.argv);
