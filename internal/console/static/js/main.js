// The console's entry point: runs the module of the page the server
// rendered (body data-page).
import { init as overview } from './overview.js';
import { init as live } from './live.js';
import { init as events } from './events.js';
import { init as projects } from './projects.js';
import { init as project } from './project.js';
import { init as hooks } from './hooks.js';
import { init as hook } from './hook.js';
import { init as profiles } from './profiles.js';

const pages = { overview, live, events, projects, project, hooks, hook, profiles };
const page = pages[document.body.dataset.page];
if (page) page(document.body.dataset.id || '');
